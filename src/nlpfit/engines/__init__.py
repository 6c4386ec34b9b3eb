"""Training engines: `trainer` (transformers.Trainer) and `accelerate` (our own loop).

Both take the same arguments, use the task's hooks for loss and evaluation, evaluate with the same
loop (`loop.evaluate`), write the same checkpoints (`checkpoints`), send the same figures to the
trackers (`tracking`), and return the same `TrainResult`:

    train(task, cfg, model, tokenizer, features, raw, facts, checkpoint_dir, runs_dir=None, on_checkpoint=None)

`runs_dir` is where trackers write (TensorBoard event files); `on_checkpoint(path)` is called on the
main process with each new complete checkpoint (`--hub-strategy every-save` uploads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainResult:
    """What an engine hands back to the run."""

    #: the trained model, unwrapped (no DDP wrapper)
    model: Any
    #: the Accelerator the engine ran on (the run evaluates the test split with it)
    accelerator: Any
    #: training figures of the whole run: mean loss, steps, epochs, runtime_s, samples/tokens per second,
    #: num_processes
    train: dict = field(default_factory=dict)
    #: metrics of the last evaluation on the validation split
    eval: dict = field(default_factory=dict)
    #: one entry per evaluation: epoch, step, train_loss, eval (flat metrics)
    history: list = field(default_factory=list)
    #: one entry per --logging-steps: step, epoch, loss, learning_rate, grad_norm, tokens_per_second,
    #: tokens_seen (real tokens trained on since the run began)
    log: list = field(default_factory=list)
    #: predictions of the last evaluation (`Evaluation.predictions`)
    predictions: Any = None


def get_engine(name: str):
    if name == "accelerate":
        from nlpfit.engines.accelerate import train
    elif name == "trainer":
        from nlpfit.engines.trainer import train
    else:
        from nlpfit import NlpfitError

        raise NlpfitError(f"--engine {name}: choose accelerate or trainer")
    return train
