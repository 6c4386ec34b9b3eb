"""The interface every task implements.

A task says how raw examples are read and validated, how they become features, which collator pads
them, which AutoModel class and pipeline it uses, how model outputs become metrics, and how a
trained model is used for prediction.  The engines own the training loop; a task never trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable


@dataclass
class NoOptions:
    pass


class Task:
    #: name used in run.json and the model card
    name: ClassVar[str] = ""
    #: transformers pipeline name of a trained model
    pipeline: ClassVar[str] = ""
    #: task-specific options (a dataclass of `config.opt` fields)
    Options: ClassVar[type] = NoOptions
    #: options for `nlpfit predict` (a dataclass of `config.opt` fields)
    PredictOptions: ClassVar[type] = NoOptions
    #: overrides of RunConfig defaults for this task (e.g. a better learning rate)
    defaults: ClassVar[dict[str, Any]] = {}
    #: the metric shown as the headline figure, and whether larger is better
    main_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False

    def __init__(self, cfg):
        self.cfg = cfg
        names = {f.name for f in dataclasses.fields(self.Options)}
        self.opts = self.Options(**{k: v for k, v in cfg.task_options.items() if k in names})

    # ---- data -------------------------------------------------------------------------------
    def default_data(self) -> list[str]:
        """`--data` when none is given (an offline corpus)."""
        raise NotImplementedError

    def default_model(self) -> str:
        """`--model` when none is given (an offline model)."""
        raise NotImplementedError

    def load_data(self, model_dir: str | None = None):
        """Read and validate `--data` into a DatasetDict of raw examples.

        `model_dir` is given when evaluating a trained model: labels must then match its config.
        """
        raise NotImplementedError

    # ---- model and features -----------------------------------------------------------------
    def build(self, raw) -> tuple[Any, Any]:
        """(model, tokenizer) ready for training on `raw`."""
        raise NotImplementedError

    def load_trained(self, out_dir: str) -> tuple[Any, Any]:
        """(model, tokenizer) of a trained output folder."""
        raise NotImplementedError

    def preprocess(self, raw, tokenizer) -> Any:
        """DatasetDict of features (model inputs and labels; eval splits may keep extra columns)."""
        raise NotImplementedError

    def collator(self, tokenizer, model):
        """Pads (and, for masked LM, masks) training batches."""
        raise NotImplementedError

    def eval_collator(self, tokenizer, model):
        """Pads evaluation batches (default: the training collator)."""
        return self.collator(tokenizer, model)

    # ---- training and evaluation hooks (used by both engines) --------------------------------
    def compute_loss(self, model, batch):
        """Training loss of one batch (a task may weight it)."""
        return model(**batch).loss

    def eval_step(self, model, batch) -> dict:
        """Per-example tensors (first dimension = batch) that `compute_metrics` needs."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, list], features, raw) -> dict:
        """Metrics from the gathered per-example outputs, in dataset order."""
        raise NotImplementedError

    def metrics_table(self, metrics: dict) -> str | None:
        """A human-readable table of detailed metrics (or None)."""
        return None

    # ---- use --------------------------------------------------------------------------------
    def load_predictor(self, out_dir: str) -> Any:
        """What prediction needs from OUT, loaded once: by default (model, tokenizer) from
        `load_trained`, the model on the inference device in eval mode; a task may load a pipeline."""
        from nlpfit.engines.loop import inference_device

        model, tokenizer = self.load_trained(out_dir)
        return model.to(inference_device()).eval(), tokenizer

    def predict_with(self, predictor, inputs: list, popts) -> Iterable[dict]:
        """One result per input with a loaded predictor (`nlpfit serve` loads it once for all requests)."""
        raise NotImplementedError

    def check_inputs(self, out_dir: str, inputs: list, popts) -> None:
        """Reject bad inputs or options before a model is loaded (raise NlpfitError); `predict_with`
        checks them again, for callers that keep a predictor."""

    def predict(self, out_dir: str, inputs: list, popts) -> Iterable[dict]:
        self.check_inputs(out_dir, inputs, popts)
        return self.predict_with(self.load_predictor(out_dir), inputs, popts)

    def extra_artifacts(self, folder) -> None:
        """Write task outputs beside the saved model (e.g. the last evaluation's predictions)."""

    def card_data(self) -> dict:
        """Extra facts for the model card."""
        return {}
