"""Scores of simple baselines: lead-3 for summarization (the course's baseline: the first three
sentences of each text, pysbd sentences, scored with ROUGE against the reference summary)."""

from __future__ import annotations

from nlpfit import NlpfitError

#: RunConfig fields that say which data to read (the flags of `nlpfit baseline lead3`)
DATA_FIELDS = ("data", "data_config", "validation_split", "test_split", "split_seed", "max_eval_samples")
#: Summarization options that say how to read it
TASK_FIELDS = ("text_column", "summary_column", "filter", "min_words", "dedupe", "sentence_language")


def lead3(cfg, split: str = "validation") -> dict:
    """ROUGE of the first three sentences of each text of `split` against its reference summary;
    `cfg` is a summarization RunConfig (no --data: the task's offline default data)."""
    from nlpfit.metrics.generation import lead, rouge
    from nlpfit.tasks import make_task

    task = make_task(cfg)
    if not cfg.data:
        task = make_task(task.cfg.replace(data=list(task.default_data())))
    raw, _ = task.load_data(trained=task.Facts())  # data to score, not to train on: no train split needed
    if split not in raw:
        raise NlpfitError(f"--split {split}: the data has no such split (it has {', '.join(raw)})")
    ds = raw[split]
    if cfg.max_eval_samples:
        ds = ds.select(range(min(cfg.max_eval_samples, len(ds))))
    lang = task.opts.sentence_language
    predictions = [lead(t, 3, lang) for t in ds["source"]]
    scores = rouge(predictions, list(ds["target"]), lang)
    scores["examples"] = len(ds)
    return scores
