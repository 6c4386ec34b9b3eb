"""Task registry.  Each task is one module behind the small interface in `base.Task`.

Modules are imported lazily so that `nlpfit --help` stays fast; a task module keeps its heavy
imports (torch, transformers, datasets) inside functions.
"""

from __future__ import annotations

import importlib

#: command name -> (module, class name, preset options, one-line help)
REGISTRY: dict[str, tuple[str, str, dict, str]] = {
    "ner": ("nlpfit.tasks.token_classification", "TokenClassification", {"label_column": "ner_tags"},
            "Named-entity recognition (token classification on ner_tags)."),
    "pos": ("nlpfit.tasks.token_classification", "TokenClassification", {"label_column": "pos_tags"},
            "Part-of-speech tagging (token classification on pos_tags)."),
    "chunk": ("nlpfit.tasks.token_classification", "TokenClassification", {"label_column": "chunk_tags"},
              "Chunking (token classification on chunk_tags)."),
    "mlm": ("nlpfit.tasks.mlm", "MaskedLM", {},
            "Masked-language-model domain adaptation (fill-mask; perplexity on masked tokens)."),
    "qa": ("nlpfit.tasks.qa", "QuestionAnswering", {},
           "Extractive question answering (SQuAD: answer spans in long contexts; exact match and F1)."),
    "translation": ("nlpfit.tasks.translation", "Translation", {},
                    "Translation (encoder-decoder; generation-based evaluation with sacreBLEU BLEU and chrF)."),
    "summarization": ("nlpfit.tasks.summarization", "Summarization", {},
                      "Summarization (encoder-decoder; generation-based evaluation with ROUGE)."),
    "clm": ("nlpfit.tasks.clm", "CausalLM", {},
            "Causal language model from scratch (GPT-2 code completion; loss and perplexity)."),
}


def task_class(name: str):
    from nlpfit import NlpfitError

    if name not in REGISTRY:
        raise NlpfitError(f"unknown task {name!r}; choose from {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name][:2]
    return getattr(importlib.import_module(module), cls)


def task_presets(name: str) -> dict:
    return dict(REGISTRY[name][2])


def typed_config(cfg):
    """`cfg` with its task options as the task's typed Options (from a dict of values: unknown keys
    dropped, missing ones at their defaults and presets).  A new RunConfig; `cfg` is not changed."""
    import dataclasses

    cls = task_class(cfg.task)
    options = cfg.task_options
    if not isinstance(options, cls.Options):
        values = {**task_presets(cfg.task), **dict(options or {})}
        names = {f.name for f in dataclasses.fields(cls.Options)}
        options = cls.Options(**{k: v for k, v in values.items() if k in names})
    return cfg.replace(task_options=options)


def make_task(cfg):
    """The task object for a RunConfig: task options typed (`typed_config`), and the hold-out
    fractions that are not given at their defaults for given data (0.1 validation, no test;
    `run.resolve` puts the default data's own hold-out in first)."""
    cfg = typed_config(cfg)
    cfg = cfg.replace(validation_split=0.1 if cfg.validation_split is None else cfg.validation_split,
                      test_split=0.0 if cfg.test_split is None else cfg.test_split)
    return task_class(cfg.task)(cfg)


def task_help(name: str) -> str:
    return REGISTRY[name][3]


def default_config(name: str, **overrides):
    """The RunConfig that `nlpfit train NAME` gets with no flags (task defaults and presets), plus overrides."""
    from nlpfit.config import RunConfig

    cls = task_class(name)
    options = overrides.pop("task_options", {})
    return typed_config(RunConfig(**{**cls.defaults, **overrides}, task=name, task_options=options))
