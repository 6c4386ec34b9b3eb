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
    logging_steps: int = opt(10, "Log loss, learning rate, gradient norm and tokens/s every N optimizer steps "
                                 "(metrics.json's log, the trackers, the progress bar).")
    report_to: list = opt([], "Send the logged figures to a tracker (repeat for several); tensorboard writes "
                              "OUT/runs/.", multiple=True, choices=("none", "tensorboard", "wandb", "mlflow"))
    save_steps: int = opt(0, "Save a checkpoint every N optimizer steps (0: at the end of every epoch).")
    save_total_limit: int = opt(1, "Checkpoints kept while training: the newest K.")
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


def cli_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def save_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
