"""The Python API: what the command line does, as three functions.

    import nlpfit

    run = nlpfit.train("ner", data="data/ner/", model="bert-base-cased", output="runs/ner", epochs=1)
    run.metrics["eval"]["f1"], run.output
    nlpfit.evaluate(run.output, split="test")["f1"]
    for row in nlpfit.predict(run.output, ["Alice moved to Paris ."], aggregation="first"):
        print(row["entities"])

Options are the flags' names as Python names (`batch_size=32`, `label_all_subtokens=False`; see
`nlpfit train TASK --help`), checked like the flags before anything loads; `config="run.yaml"` reads
a config file, and keyword arguments override it.  Bad input raises `nlpfit.NlpfitError` with the
one-line message the command line prints (`batch_size=0: must be at least 1`); the library never
exits the process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from nlpfit.config import EvaluateOptions, Where


class Trained(NamedTuple):
    """What `nlpfit.train` returns: the metrics (as OUT/metrics.json holds them) and the model folder."""

    metrics: dict
    output: Path


def _listed(value: Any) -> Any:
    if isinstance(value, (str, Path)):
        return [str(value)]
    if isinstance(value, tuple):
        return list(value)
    return value


def train(task: str | None = None, *, config: str | Path | None = None, **options) -> Trained:
    """Train a model for `task` ("ner", "pos", "chunk", "mlm", "translation", "summarization",
    "clm" or "qa"; or the `task:` of the config file) and save it in `output`."""
    from nlpfit import run
    from nlpfit.config_file import read, run_config, train_fields, unknown_option

    file_values: dict = {}
    lines: dict = {}
    if config is not None:
        cf = read(str(config), label=f"config={str(config)!r}")
        task = cf.task_for(task, "nlpfit.train")
        fields = train_fields(task)
        file_values, lines = cf.values(fields, command=f"nlpfit train {task}")
    elif task is None:
        from nlpfit import NlpfitError

        raise NlpfitError("nlpfit.train: name the task (e.g. nlpfit.train('ner', ...)) or give config='run.yaml'")
    fields = train_fields(task)
    known = [f.name for f in fields]
    for name in options:
        if name not in known:
            raise unknown_option(name, known, f"nlpfit.train({task!r})")
    multiple = {f.name for f in fields if f.metadata.get("multiple")}
    given = {k: _listed(v) if k in multiple else v for k, v in options.items()}
    cfg = run_config(task, {**file_values, **given})
    where = Where(style="key", file=str(config) if config is not None else None, lines=lines,
                  given=frozenset(options))
    result = run.train(cfg, where=where)
    return Trained(metrics=result["metrics"], output=Path(result["config"].output))


def evaluate(out: str | Path, **options) -> dict:
    """The metrics of the model folder `out` on a split (`split="test"`, `data=`, `batch_size=`,
    `precision="bf16"`)."""
    from nlpfit import run
    from nlpfit.config_file import unknown_option

    known = [f.name for f in dataclasses.fields(EvaluateOptions)]
    for name in options:
        if name not in known:
            raise unknown_option(name, known, "nlpfit.evaluate")
    values = {**{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                 for f in dataclasses.fields(EvaluateOptions)}, **options}
    data = _listed(values["data"])
    return run.evaluate(str(out), data, values["split"], values["batch_size"], values["precision"],
                        where=Where(style="key"))["metrics"]


def predict(out: str | Path, inputs, **options) -> Iterator[dict]:
    """The predictions of the model folder `out` for `inputs` (a text, or a list of texts or of the
    objects the task reads, e.g. {"question", "context"}), one row per input; options are the task's
    prediction options (`aggregation="first"`, `top_k=3`, `batch_size=8`)."""
    from nlpfit import run
    from nlpfit.config_file import unknown_option
    from nlpfit.tasks import make_task

    cfg, _ = run.load_run(str(out))
    known = [f.name for f in dataclasses.fields(make_task(cfg).PredictOptions)]
    for name in options:
        if name not in known:
            raise unknown_option(name, known, f"nlpfit.predict (a {cfg.task} model)")
    if isinstance(inputs, (str, dict)):
        inputs = [inputs]
    return iter(run.predict(str(out), list(inputs), options, where=Where(style="key")))
