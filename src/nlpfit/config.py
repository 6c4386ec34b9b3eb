"""One resolved run configuration, saved as OUT/run.json beside every model.

`RunConfig` holds the options every task shares (engine, optimisation, data split); each task adds
its own options as a small dataclass (`Task.Options`), held typed in `RunConfig.task_options`.  The
command line is generated from these dataclasses, so a flag, its default and its help text are
written once, here or in the task.  A RunConfig is frozen: a step that fills something in (the
offline defaults of `--model` and `--data`) makes a new one with `dataclasses.replace`.

Each option also declares the values it accepts (`min`/`max`, exclusive `above`/`below`, finite
numbers, `choices`, a `check` of its own), and one checker (`check`) enforces them for the command
line, config files, the Python API and the server alike, before anything is loaded or written.  A
problem is one line naming the option the way the user wrote it (`Where`): `--batch-size 0` on the
command line, `run.yaml:3: batch_size 0` in a config file, `batch_size=0` in the Python API.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


def opt(default: Any, help: str, flag: str | None = None, choices: tuple | None = None, multiple: bool = False,
        *, min: float | None = None, max: float | None = None, above: float | None = None,
        below: float | None = None, finite: bool = True, check: Callable[[Any], str | None] | None = None,
        required: bool = False):
    """A dataclass field that is also a command-line option.

    The accepted values are declared with it: `min`/`max` (inclusive) and `above`/`below`
    (exclusive) bounds for numbers, `finite` (floats: no nan or inf; the default), `choices`, and
    `check(value)`, which returns a problem in words (or None) for rules a range cannot say.
    `required`: the command line needs it (no default)."""
    meta = {"help": help, "flag": flag, "choices": choices, "multiple": multiple, "min": min, "max": max,
            "above": above, "below": below, "finite": finite, "check": check, "required": required}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit


def _fp16_device(value: str) -> str | None:
    if value != "fp16":
        return None
    import torch

    if torch.cuda.is_available() or torch.backends.mps.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return None
    return "needs a GPU, and none is available here (bf16 works on CPUs too)"


@dataclass(frozen=True)
class RunConfig:
    """Options shared by every task and both engines."""

    data: list = opt([], "Hub dataset id, a folder of split files, or one file (repeat to concatenate).", multiple=True)
    data_config: str | None = opt(None, "Configuration name of a hub dataset (e.g. a language pair).")
    model: str | None = opt(None, "Model: hub id or local folder (default: the task's offline default).")
    output: str = opt("runs/model", "Output folder (written in a temp folder, moved into place at the end).")
    overwrite: bool = opt(False, "Replace OUT if it already exists.")
    engine: str = opt("accelerate", "Training engine.", choices=("accelerate", "trainer"))
    epochs: float = opt(3.0, "Number of training epochs.", above=0)
    max_steps: int = opt(-1, "Stop after this many optimizer steps (overrides --epochs when > 0; -1: off).", min=-1)
    batch_size: int = opt(16, "Per-device training batch size.", min=1)
    eval_batch_size: int = opt(64, "Per-device evaluation batch size.", min=1)
    grad_accum: int = opt(1, "Gradient accumulation steps.", min=1)
    lr: float = opt(5e-5, "Peak learning rate (AdamW).", above=0)
    weight_decay: float = opt(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights).", min=0)
    warmup_ratio: float = opt(0.0, "Fraction of the optimizer steps spent on linear warmup.", min=0, max=1)
    scheduler: str = opt("linear", "Learning-rate schedule after warmup.", choices=("linear", "cosine", "constant"))
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (0 disables).", min=0)
    seed: int = opt(42, "Random seed (data order, initialisation, dropout).", min=0, max=SEED_MAX)
    mixed_precision: str = opt("no", "Mixed precision: fp16 on GPUs; bf16 on GPUs and on CPUs with AVX-512 BF16.",
                               choices=("no", "fp16", "bf16"), check=_fp16_device)
    group_by_length: bool = opt(True, "Batch examples of similar length together (seeded, batches shuffled).")
    eval_steps: int = opt(0, "Also evaluate every N optimizer steps (0: once per epoch).", min=0)
    eval_before: bool = opt(False, "Evaluate once before training.")
    validation_split: float | None = opt(None, "Fraction held out for validation when --data has no validation split "
                                               "[default: 0.1; without --data, the task's default hold-out].",
                                        min=0, below=1)
    test_split: float | None = opt(None, "Fraction held out for test when --data is one file without a test split "
                                         "[default: 0; without --data, the task's default hold-out].",
                                  min=0, below=1)
    split_seed: int = opt(42, "Seed of the deterministic validation/test hold-out.", min=0, max=SEED_MAX)
    max_train_samples: int = opt(0, "Use only the first N training examples (0: all).", min=0)
    max_eval_samples: int = opt(0, "Use only the first N evaluation examples (0: all).", min=0)
    logging_steps: int = opt(10, "Log loss, learning rate, gradient norm, tokens/s and tokens seen every N optimizer steps "
                                 "(metrics.json's log, the trackers, the progress bar).", min=1)
    report_to: list = opt([], "Send the logged figures to a tracker (repeat for several); tensorboard writes "
                              "OUT/runs/.", multiple=True, choices=("none", "tensorboard", "wandb", "mlflow"))
    save_steps: int = opt(0, "Save a checkpoint every N optimizer steps (0: at the end of every epoch).", min=0)
    save_total_limit: int = opt(1, "Checkpoints kept while training: the newest K.", min=1)
    resume: bool = opt(False, "Continue an interrupted run from its newest complete checkpoint.")
    push_to_hub: bool = opt(False, "Upload OUT to the Hugging Face Hub after saving it.")
    hub_model_id: str | None = opt(None, "Hub repository for --push-to-hub (default: the OUT folder name).")
    hub_strategy: str = opt("end", "With --push-to-hub: end uploads OUT once saved; every-save also uploads each "
                                   "checkpoint in the background (the repository's last-checkpoint/).",
                            choices=("end", "every-save"))
    # filled in by the run, not by flags
    task: str = field(default="", metadata={"internal": True})
    #: the task's Options dataclass instance (`tasks.typed_config` turns a dict of values into it)
    task_options: Any = field(default=None, metadata={"internal": True})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def out(self) -> Path:
        return Path(self.output)


@dataclass(frozen=True)
class EvaluateOptions:
    """The options of `nlpfit evaluate OUT`."""

    data: list = opt([], "Data to evaluate on (default: the data the model was trained on).", multiple=True)
    split: str = opt("test", "Split to evaluate.")
    batch_size: int | None = opt(None, "Evaluation batch size (default: the training run's --eval-batch-size).", min=1)
    precision: str = opt("fp32", "Evaluation precision; bf16 (bfloat16 autocast) is faster on GPUs and on CPUs with "
                         "AVX-512 BF16, and may change the metrics slightly.", choices=("fp32", "bf16"))


@dataclass(frozen=True)
class ServeOptions:
    """The server options of `nlpfit serve OUT` (its prediction options are the task's)."""

    host: str = opt("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = opt(8000, "Port to listen on (0: any free port).", min=0, max=65535)
    max_wait_ms: float = opt(5.0, "Dynamic batching: how long the oldest request waits for others to join its batch "
                                  "(0: off).", min=0)
    max_batch_inputs: int = opt(256, "Dynamic batching: the most inputs one batch gathers from several requests.",
                                min=1)
    max_request_inputs: int = opt(1024, "The most inputs one request may hold (413 beyond).", min=1)
    api_key: str | None = opt(None, "Require `Authorization: Bearer KEY` on POST /predict (default: the "
                                    "NLPFIT_API_KEY environment variable, if set).")
    access_log: bool = opt(True, "One line per request on stderr.")


@dataclass(frozen=True)
class TokenizerTrainOptions:
    """The options of `nlpfit tokenizer train`."""

    data: list = opt([], "Folder of source files, JSON Lines/Parquet/CSV file, or hub dataset id (repeat to "
                         "concatenate; default: the Python standard library and installed packages).", multiple=True)
    data_config: str | None = opt(None, "Configuration name of a hub dataset.")
    vocab_size: int = opt(52000, "Vocabulary size (a byte-level BPE: 256 bytes, the end-of-text token, merges).",
                          min=258)
    output: str | None = opt(None, "Tokenizer folder to write.", required=True)
    base: str | None = opt(None, "Existing fast tokenizer (hub id or folder) whose pipeline is kept "
                                 "(train_new_from_iterator); default: a byte-level BPE from scratch.", flag="--from")
    glob: str = opt("**/*.py", "Files to read in a --data folder.")
    text_column: str = opt("content", "Text column of table / hub data.")
    filter_keywords: str | None = opt(None, "Keep only files mentioning one of these comma-separated words (default "
                                            "data: pandas,sklearn,matplotlib,seaborn; '' keeps all).")
    min_frequency: int = opt(2, "Minimum pair count for a merge.", min=0)
    max_files: int = opt(0, "Train on at most N files (0: all).", min=0)
    validation_split: float | None = opt(None, "Share of files held out for the report, routed as `nlpfit train clm` "
                                               "does [default: 0.05 with the default data, as train clm; else 0.1].",
                                         min=0, below=1)
    split_seed: int = opt(42, "Seed of the hold-out routing.", min=0, max=SEED_MAX)
    compare_files: int = opt(500, "Held-out files on which tokens per file are compared (0: all).", min=0)
    overwrite: bool = opt(False, "Replace --output if it exists.")


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


# ---- checking values against their declarations ----------------------------------------------
def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of an option field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def kind_of(f: dataclasses.Field) -> str:
    """The value type an option field holds: int, float, bool, str or list."""
    if f.metadata.get("multiple"):
        return "list"
    return str(f.type).replace(" ", "").split("|")[0]


def optional(f: dataclasses.Field) -> bool:
    return "None" in str(f.type) or f.default is None


@dataclass(frozen=True)
class Where:
    """Where the values being checked came from, so that a problem names each option the way the
    user wrote it: `flag` style (`--batch-size 0`), `key` style (`batch_size=0`, the Python API),
    `option` style (`option batch_size 0`, a server request); values read from a config file are
    named by file and line (`run.yaml:3: batch_size 0`) unless `given` says they came from a flag
    or argument that overrides the file."""

    style: str = "flag"
    #: the config file the values were read from, and the line of each key in it
    file: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)
    #: names given directly (flags, keyword arguments) rather than read from the file
    given: frozenset = frozenset()

    def name(self, f: dataclasses.Field, value: Any) -> str:
        if self.file and f.name in self.lines and f.name not in self.given:
            return f"{self.file}:{self.lines[f.name]}: {f.name} {_show(value)}"
        if self.style == "key":
            return f"{f.name}={value!r}"
        if self.style == "option":
            return f"option {f.name} {json.dumps(value, default=str)}"
        return f"{flag_of(f)} {_show(value)}"

    def label(self, name: str) -> str:
        """How the user wrote an option name (for problems that are about the name, not a value)."""
        if self.file and name in self.lines and name not in self.given:
            return f"{self.file}:{self.lines[name]}: {name}"
        if self.style == "flag":
            return "--" + name.replace("_", "-")
        return name


FLAGS = Where()


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if not value or any(c.isspace() for c in value) else value
    if isinstance(value, (list, tuple)):
        return " ".join(_show(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a text",
               "list": "a list of texts"}


def problem(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with `value` for the option `f`, in words (None: nothing)."""
    meta, kind = f.metadata, kind_of(f)
    if value is None:
        return None if optional(f) else f"expected {_KIND_WORDS.get(kind, 'a value')}"
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "list": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)}.get(kind)
    if ok is not None and not ok(value):
        return f"expected {_KIND_WORDS[kind]}"
    choices = meta.get("choices")
    values = value if isinstance(value, (list, tuple)) else [value]  # a repeatable option: each value
    if choices and any(v not in choices for v in values):
        return f"must be one of {', '.join(map(str, choices))}"
    if kind in ("int", "float"):
        if kind == "float" and meta.get("finite", True) and not math.isfinite(value):
            return "must be a finite number"
        lo, hi, above, below = meta.get("min"), meta.get("max"), meta.get("above"), meta.get("below")
        if ((lo is not None and value < lo) or (hi is not None and value > hi) or (above is not None and not value > above)
                or (below is not None and not value < below)):
            return "must be " + describe_range(f)
    own = meta.get("check")
    return own(value) if own is not None else None


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def describe_range(f: dataclasses.Field) -> str:
    """The declared range of a numeric option in words: "at least 1", "above 0", "at least 0 and below 1"."""
    meta = f.metadata
    parts = []
    if meta.get("min") is not None:
        parts.append(f"at least {_num(meta['min'])}")
    if meta.get("above") is not None:
        parts.append(f"above {_num(meta['above'])}")
    if meta.get("max") is not None:
        parts.append(f"at most {_num(meta['max'])}")
    if meta.get("below") is not None:
        parts.append(f"below {_num(meta['below'])}")
    return " and ".join(parts) or "any number"


def check(instance: Any, where: Where = FLAGS) -> None:
    """Check every option of a dataclass instance (a RunConfig with its task options, a task's
    Options or PredictOptions, ...) against its declaration; raise NlpfitError naming the first bad one.

    Runs before anything is loaded or written, the same way for every entry point."""
    from nlpfit import NlpfitError

    for f in dataclasses.fields(instance):
        if f.metadata.get("internal") or "help" not in f.metadata:
            continue
        value = getattr(instance, f.name)
        bad = problem(f, value)
        if bad:
            raise NlpfitError(f"{where.name(f, value)}: {bad}")
    if isinstance(instance, RunConfig):
        from nlpfit.tasks import task_class

        cls = task_class(instance.task)
        options = instance.task_options
        if isinstance(options, cls.Options):
            check(options, where)
        elif options:
            known = {f.name: f for f in dataclasses.fields(cls.Options)}
            for name, value in dict(options).items():
                if name not in known:
                    raise NlpfitError(f"{where.label(name)}: {instance.task} has no such option")
                bad = problem(known[name], value)
                if bad:
                    raise NlpfitError(f"{where.name(known[name], value)}: {bad}")


def save_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


_KINDS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,),
          "None": (type(None),)}


def check_types(cls, values: dict, where: str) -> None:
    """Each value of `values` whose field of the dataclass `cls` has a plain annotation (int, float,
    str, bool, list, dict, optional ones) has that type; the error names `where` and the field."""
    from nlpfit import NlpfitError

    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        kinds = str(f.type).replace(" ", "").split("|")
        if any(k not in _KINDS for k in kinds):
            continue  # Any, or a type this check does not know
        value = values[f.name]
        allowed = tuple(t for k in kinds for t in _KINDS[k])
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            shown = json.dumps(value)[:40] if _jsonable(value) else type(value).__name__
            raise NlpfitError(f"{where}.{f.name} is {shown}, expected {' or '.join(kinds)}")


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
