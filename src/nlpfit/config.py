"""One resolved run configuration, saved as OUT/run.json beside every model.

`RunConfig` holds the options every task shares (engine, optimisation, data split); each task adds
its own options as a small dataclass (`Task.Options`), held typed in `RunConfig.task_options`.  The
command line is generated from these dataclasses, so a flag, its default and its help text are
written once, here or in the task.  A RunConfig is frozen: a step that fills something in (the
offline defaults of `--model` and `--data`) makes a new one with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def opt(default: Any, help: str, flag: str | None = None, choices: tuple | None = None, multiple: bool = False):
    """A dataclass field that is also a command-line option."""
    meta = {"help": help, "flag": flag, "choices": choices, "multiple": multiple}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """Options shared by every task and both engines."""

    data: list = opt([], "Hub dataset id, a folder of split files, or one file (repeat to concatenate).", multiple=True)
    data_config: str | None = opt(None, "Configuration name of a hub dataset (e.g. a language pair).")
    model: str | None = opt(None, "Model: hub id or local folder (default: the task's offline default).")
    output: str = opt("runs/model", "Output folder (written in a temp folder, moved into place at the end).")
    overwrite: bool = opt(False, "Replace OUT if it already exists.")
    engine: str = opt("accelerate", "Training engine.", choices=("accelerate", "trainer"))
    epochs: float = opt(3.0, "Number of training epochs.")
    max_steps: int = opt(-1, "Stop after this many optimizer steps (overrides --epochs when > 0).")
    batch_size: int = opt(16, "Per-device training batch size.")
    eval_batch_size: int = opt(64, "Per-device evaluation batch size.")
    grad_accum: int = opt(1, "Gradient accumulation steps.")
    lr: float = opt(5e-5, "Peak learning rate (AdamW).")
    weight_decay: float = opt(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights).")
    warmup_ratio: float = opt(0.0, "Fraction of the optimizer steps spent on linear warmup.")
    scheduler: str = opt("linear", "Learning-rate schedule after warmup.", choices=("linear", "cosine", "constant"))
    max_grad_norm: float = opt(1.0, "Gradient clipping norm (0 disables).")
    seed: int = opt(42, "Random seed (data order, initialisation, dropout).")
    mixed_precision: str = opt("no", "Mixed precision: fp16 on GPUs; bf16 on GPUs and on CPUs with AVX-512 BF16.",
                               choices=("no", "fp16", "bf16"))
    group_by_length: bool = opt(True, "Batch examples of similar length together (seeded, batches shuffled).")
    eval_steps: int = opt(0, "Also evaluate every N optimizer steps (0: once per epoch).")
    eval_before: bool = opt(False, "Evaluate once before training.")
    validation_split: float | None = opt(None, "Fraction held out for validation when --data has no validation split "
                                               "[default: 0.1; without --data, the task's default hold-out].")
    test_split: float | None = opt(None, "Fraction held out for test when --data is one file without a test split "
                                         "[default: 0; without --data, the task's default hold-out].")
    split_seed: int = opt(42, "Seed of the deterministic validation/test hold-out.")
    max_train_samples: int = opt(0, "Use only the first N training examples (0: all).")
    max_eval_samples: int = opt(0, "Use only the first N evaluation examples (0: all).")
    resume: bool = opt(False, "Continue an interrupted run from its last checkpoint.")
    push_to_hub: bool = opt(False, "Upload OUT to the Hugging Face Hub after saving it.")
    hub_model_id: str | None = opt(None, "Hub repository for --push-to-hub (default: the OUT folder name).")
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


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


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
