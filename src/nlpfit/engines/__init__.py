"""Training engines: `trainer` (transformers.Trainer) and `accelerate` (our own loop).

Both take the same RunConfig, use the task's hooks for loss and evaluation, evaluate with the same
loop (`loop.evaluate`), and return the same `TrainResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainResult:
    model: object
    train: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    history: list = field(default_factory=list)


def get_engine(name: str):
    if name == "accelerate":
        from nlpfit.engines.accelerate import train
    elif name == "trainer":
        from nlpfit.engines.trainer import train
    else:
        from nlpfit import NlpfitError

        raise NlpfitError(f"--engine {name}: choose accelerate or trainer")
    return train
