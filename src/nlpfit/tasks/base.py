"""The interface every task implements.

A task says how raw examples are read and validated, how they become features, which collator pads
them, which AutoModel class and pipeline it uses, how model outputs become metrics, and how a
trained model is used for prediction.  The engines own the training loop; a task never trains.

Every hook receives what it needs as arguments and returns what it makes: the tokenizer, the facts
found in the data (`Facts`: label names, BIO or not, null answers ...) and the split being read are
passed in; nothing is set on a task from outside, and no hook leaves state for a later one.  A task
holds only its resolved, frozen configuration (`cfg`) and its typed options (`opts`).

The order in which `run.py` calls the hooks when training:

    raw, facts = task.load_data()                  # read and validate --data
    model, tokenizer = task.build(raw, facts)       # the model to train and its tokenizer
    features, facts = task.preprocess(raw, tokenizer, model.config, facts, training=True)
    engine(...)                                     # collator, loss_function, eval_step, compute_metrics
    task.extra_artifacts(folder, predictions)       # beside the saved model
    task.card_data(facts, model, tokenizer)         # run.json's task_data and the model card

`nlpfit evaluate` reads the facts of the trained model (`trained_facts`) and passes them to
`load_data`; `nlpfit predict` and `nlpfit serve` use `check_inputs`, `load_predictor` and
`predict_with`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

from nlpfit.config import opt


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass(frozen=True)
class PredictOptions:
    """Options every task's prediction takes; a task's PredictOptions adds its own fields."""

    batch_size: int = opt(0, "Inference batch size (0: the --eval-batch-size of the training run).", min=0)
    precision: str = opt("fp32", "Inference precision; bf16 (bfloat16 autocast) is about 2x faster on GPUs and on CPUs "
                         "with AVX-512 BF16, and may change borderline predictions.", choices=("fp32", "bf16"))


@dataclass(frozen=True)
class Facts:
    """What reading the data found that later steps need (a task extends it with its own fields)."""


@dataclass
class Evaluation:
    """`compute_metrics`'s result: the metrics, and the per-example predictions that a task saves
    beside the model (None when it saves none)."""

    metrics: dict
    predictions: Any = None


class Task:
    #: name used in run.json and the model card
    name: ClassVar[str] = ""
    #: transformers pipeline name of a trained model
    pipeline: ClassVar[str] = ""
    #: task-specific options (a dataclass of `config.opt` fields)
    Options: ClassVar[type] = NoOptions
    #: options for `nlpfit predict` (a dataclass of `config.opt` fields, extending `PredictOptions`)
    PredictOptions: ClassVar[type] = PredictOptions
    #: what `load_data` finds in the data (a frozen dataclass extending `Facts`)
    Facts: ClassVar[type] = Facts
    #: overrides of RunConfig defaults for this task (e.g. a better learning rate)
    defaults: ClassVar[dict[str, Any]] = {}
    #: (validation, test) fractions held out of the offline default data
    default_split: ClassVar[tuple[float, float]] = (0.1, 0.1)
    #: the metric shown as the headline figure, and whether larger is better
    main_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False
    #: what `nlpfit sweep` searches when no --search is given: option name -> a range "LOW:HIGH"
    #: (":log" samples it on a log scale) or choices "A,B,C"; options the user fixes are left out
    search_space: ClassVar[dict[str, str]] = {"lr": "1e-5:1e-3:log", "batch_size": "8,16,32", "warmup_ratio": "0:0.2",
                                              "weight_decay": "0:0.1", "epochs": "1,2,3"}

    #: evaluation and prediction batches end before an example shorter than (1 - this) times the
    #: batch's longest (`inference.batches_by_length`); None: full batches (generation, equal blocks)
    max_batch_padding: ClassVar[float | None] = None

    def __init__(self, cfg):
        if not isinstance(cfg.task_options, self.Options):
            raise TypeError(f"{type(self).__name__} needs typed options: build the task with tasks.make_task")
        self.cfg = cfg

    @property
    def opts(self):
        """The task's options (typed, part of the frozen configuration)."""
        return self.cfg.task_options

    # ---- data -------------------------------------------------------------------------------
    def default_data(self) -> list[str]:
        """`--data` when none is given (an offline corpus)."""
        raise NotImplementedError

    def default_data_options(self) -> dict:
        """Task options that go with the offline default data (recorded in run.json)."""
        return {}

    def default_model(self) -> str:
        """`--model` when none is given (an offline model)."""
        raise NotImplementedError

    def load_data(self, trained: Facts | None = None) -> tuple[Any, Facts]:
        """Read and validate `--data`: (DatasetDict of raw examples, the facts found in it).

        `trained` is given when the data is for evaluating a trained model (the facts of that
        model, from `trained_facts`): labels must then match it, and no train split is needed.
        """
        raise NotImplementedError

    def trained_facts(self, out_dir: str) -> Facts:
        """The facts a trained model folder was trained with (default: none)."""
        return self.Facts()

    # ---- model and features -----------------------------------------------------------------
    def build(self, raw, facts: Facts) -> tuple[Any, Any]:
        """(model, tokenizer) ready for training on `raw`."""
        raise NotImplementedError

    def load_trained(self, out_dir: str) -> tuple[Any, Any]:
        """(model, tokenizer) of a trained output folder."""
        raise NotImplementedError

    def preprocess(self, raw, tokenizer, model_config, facts: Facts, *, training: bool) -> tuple[Any, Facts]:
        """(DatasetDict of features, facts with what preprocessing found added).

        Features are model inputs and labels (evaluation splits may keep extra columns); with
        `training`, the train split is prepared for training, otherwise every split for evaluation.
        """
        raise NotImplementedError

    def collator(self, tokenizer, model):
        """Pads (and, for masked LM, masks) training batches."""
        raise NotImplementedError

    def eval_collator(self, tokenizer, model):
        """Pads evaluation batches (default: the training collator)."""
        return self.collator(tokenizer, model)

    # ---- training and evaluation hooks (used by both engines) --------------------------------
    def loss_function(self, tokenizer) -> Callable | None:
        """`loss(model, batch)` for training, or None for the model's own loss (`model(**batch).loss`)."""
        return None

    def trainer_classes(self) -> tuple[type, type]:
        """(Trainer class, TrainingArguments class) of the trainer engine."""
        from transformers import Trainer, TrainingArguments

        return Trainer, TrainingArguments

    def training_arguments(self) -> dict:
        """Extra TrainingArguments of the trainer engine."""
        return {}

    def eval_step(self, model, batch) -> dict:
        """Per-example tensors (first dimension = batch) that `compute_metrics` needs."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, list], features, raw, facts: Facts, tokenizer) -> Evaluation:
        """Metrics (and predictions) from the gathered per-example outputs, in dataset order."""
        raise NotImplementedError

    def metrics_table(self, metrics: dict) -> str | None:
        """A human-readable table of detailed metrics (or None)."""
        return None

    # ---- use --------------------------------------------------------------------------------
    def load_predictor(self, out_dir: str) -> Any:
        """What prediction needs from OUT, loaded once: by default (model, tokenizer) from
        `load_trained`, the model on the inference device in eval mode; a task may load a pipeline."""
        from nlpfit.inference import inference_device

        model, tokenizer = self.load_trained(out_dir)
        return model.to(inference_device()).eval(), tokenizer

    def predict_with(self, predictor, inputs: list, popts) -> Iterable[dict]:
        """One result per input with a loaded predictor (`nlpfit serve` loads it once for all requests)."""
        raise NotImplementedError

    def example_inputs(self, raw, n: int) -> list:
        """Up to `n` inputs for prediction made from a split of raw examples, as `nlpfit predict --input`
        reads them (saved as OUT/examples.json: the playground's examples, the report's samples)."""
        return []

    def check_inputs(self, out_dir: str, inputs: list, popts) -> None:
        """Reject bad inputs or options before a model is loaded (raise NlpfitError); `predict_with`
        checks them again, for callers that keep a predictor."""

    def predict(self, out_dir: str, inputs: list, popts) -> Iterable[dict]:
        """One result per input: `check_inputs`, then `predict_with` a predictor loaded from OUT."""
        self.check_inputs(out_dir, inputs, popts)
        return self.predict_with(self.load_predictor(out_dir), inputs, popts)

    def extra_artifacts(self, folder, predictions) -> None:
        """Write task outputs beside the saved model; `predictions` are those of the last evaluation
        (`Evaluation.predictions` of the test split when there is one, else of the final validation)."""

    def card_data(self, facts: Facts, model, tokenizer) -> dict:
        """Extra facts for run.json's `task_data` and the model card."""
        return {}
