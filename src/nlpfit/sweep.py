"""`nlpfit sweep TASK`: a hyperparameter search with Optuna.

    nlpfit sweep ner --max-train-samples 400 --trials 4 --output runs/sweep \\
        --search lr=5e-5:1e-3:log --search batch_size=8,16,32

Each trial is an ordinary training run (the options of `nlpfit train TASK`, with the searched ones
sampled) whose model lands in OUT/trials/NNN.  The objective is the task's headline metric on the
validation split (`Task.main_metric`, maximised when `Task.greater_is_better`); every evaluation of
a trial (each epoch, or each --eval-steps) is reported to Optuna, and the median pruner stops a
trial that falls below the median of earlier trials at the same step (`on_evaluate` of
`run.train`).  Without --search the task's `search_space` is searched, less the options given as
flags or in the config file (those stay fixed), and less `epochs` under --max-steps.

The study lives in OUT/sweep.db (SQLite), so `--resume` continues an interrupted sweep: finished
trials are kept, trials that were cut short run again with the same parameters.  `--parallel K`
runs K worker processes against the same storage; a file lock makes them start exactly --trials
trials between them.  At the end: the table of trials (printed and OUT/sweep.csv), the best
trial's model copied to OUT/best, and OUT/report.html (the table and a parameter-importance plot,
optuna.importance drawn by matplotlib as inline SVG).  OUT/sweep.yaml holds the sweep as a config
file: `nlpfit sweep --config OUT/sweep.yaml --output NEW` runs it again.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import html
import io
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpfit import NlpfitError
from nlpfit.config import FLAGS, RunConfig, Where, check, cli_fields, kind_of, opt, problem
from nlpfit.log import info, warn


@dataclass(frozen=True)
class SweepOptions:
    """The options `nlpfit sweep` adds to those of `nlpfit train` (a config file's `sweep:` section)."""

    trials: int = opt(10, "Trials in the sweep (a resumed sweep runs until this many have finished).", min=1)
    search: list = opt([], "A hyperparameter to search: NAME=LOW:HIGH (a range), NAME=LOW:HIGH:log (a range "
                           "sampled on a log scale) or NAME=A,B,C (choices); repeatable [default: the task's "
                           "search space].", multiple=True)
    parallel: int = opt(1, "Trials run at once, as separate processes sharing OUT/sweep.db.", min=1)
    prune: bool = opt(True, "Stop a trial whose evaluation falls below the median of earlier trials at the "
                            "same step (Optuna's MedianPruner).")


#: options that are not hyperparameters: where data and models come from and go, run control
NOT_SEARCHABLE = {"data", "data_config", "output", "overwrite", "resume", "push_to_hub", "hub_model_id"}
STUDY = "nlpfit"
#: finished trials before the median pruner starts pruning
PRUNE_AFTER = 2
SPEC_HELP = "NAME=LOW:HIGH, NAME=LOW:HIGH:log or NAME=A,B,C"
DEFAULT_NAMES = ("lr", "batch_size", "warmup_ratio", "weight_decay", "epochs", "scheduler")


# ---- the search space ---------------------------------------------------------------------------
def _parse_value(f: dataclasses.Field, text: str) -> Any:
    kind = kind_of(f)
    text = text.strip()
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "yes", "1")
    return text


def parse_spec(spec: str, fields: dict[str, dataclasses.Field], label: str):
    """(name, Optuna distribution) of one `NAME=...` search spec; a bad spec is one error line."""
    import optuna.distributions as D

    name, eq, body = spec.partition("=")
    name = name.strip().replace("-", "_")
    searchable = sorted(n for n, f in fields.items() if n not in NOT_SEARCHABLE and kind_of(f) != "list")
    if not eq or not name or not body.strip():
        raise NlpfitError(f"{label} {spec}: expected {SPEC_HELP} (e.g. lr=1e-5:1e-3:log)")
    f = fields.get(name)
    if f is None or name not in searchable:
        why = "not an option of this task" if f is None else "not a hyperparameter"
        raise NlpfitError(f"{label} {spec}: {name} is {why} (search any numeric, true/false or text option of "
                          f"`nlpfit train`, e.g. {', '.join(n for n in DEFAULT_NAMES if n in fields)})")
    kind = kind_of(f)
    is_range = ":" in body
    if is_range:
        parts = body.split(":")
        log = len(parts) == 3 and parts[2].strip().lower() == "log"
        if kind not in ("int", "float"):
            raise NlpfitError(f"{label} {spec}: a range needs a numeric option; give {name} choices: {name}=A,B")
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise NlpfitError(f"{label} {spec}: expected {SPEC_HELP}")
        texts = parts[:2]
    else:
        texts = body.split(",")
    values = []
    for text in texts:
        try:
            values.append(_parse_value(f, text))
        except ValueError:
            word = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(kind, "a value")
            raise NlpfitError(f"{label} {spec}: {text.strip()!r} is not {word} ({name})") from None
    for value in values:
        bad = problem(f, value)
        if bad:
            raise NlpfitError(f"{label} {spec}: {name} {value}: {bad}")
    if is_range:
        low, high = values
        if not low < high:
            raise NlpfitError(f"{label} {spec}: the range's low end must be below its high end")
        if log and low <= 0:
            raise NlpfitError(f"{label} {spec}: a log range must be above 0")
        dist = D.FloatDistribution(low, high, log=log) if kind == "float" else D.IntDistribution(low, high, log=log)
        return name, dist
    if len(set(values)) < 2:
        raise NlpfitError(f"{label} {spec}: one value is not a search: fix it as a training option "
                          f"(--{name.replace('_', '-')} {body.strip()}), or list two or more values")
    return name, D.CategoricalDistribution(list(dict.fromkeys(values)))


def search_space(cfg: RunConfig, specs: list[str], where: Where = FLAGS, fixed: set[str] = frozenset()) -> dict:
    """{name: spec} of the sweep, and checked: the given specs, or the task's `search_space` less the
    options given as flags or in the config file (and `epochs` under --max-steps)."""
    from nlpfit.config_file import train_fields
    from nlpfit.tasks import task_class

    fields = {f.name: f for f in train_fields(cfg.task)}
    label = where.label("search")
    space: dict[str, str] = {}
    if specs:
        for spec in specs:
            name, _ = parse_spec(spec, fields, label)
            if name in space:
                raise NlpfitError(f"{label} {spec}: {name} is searched twice")
            if name in fixed:
                raise NlpfitError(f"{label} {spec}: {name} is also given as {where.label(name)} (a fixed value): "
                                  "drop one of them")
            space[name] = spec.partition("=")[2].strip()
        return space
    for name, body in task_class(cfg.task).search_space.items():
        if name in fixed or (name == "epochs" and cfg.max_steps > 0):
            continue
        parse_spec(f"{name}={body}", fields, "search_space")
        space[name] = body
    if not space:
        raise NlpfitError(f"nothing to search: the options of {cfg.task}'s search space are all given; add --search "
                          f"{SPEC_HELP}")
    return space


def distributions(task: str, space: dict[str, str]) -> dict:
    from nlpfit.config_file import train_fields

    fields = {f.name: f for f in train_fields(task)}
    return dict(parse_spec(f"{name}={body}", fields, "search") for name, body in space.items())


# ---- the sweep folder -----------------------------------------------------------------------------
def _storage(out: Path):
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{out.resolve() / 'sweep.db'}",
                                      engine_kwargs={"connect_args": {"timeout": 300}})


def _study(out: Path, task_cls, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=_storage(out))
    n = len(study.get_trials(deepcopy=False))
    # a seed of its own for each worker and each resumption, or they would sample the same trials again
    sampler = optuna.samplers.TPESampler(seed=(seed + 7919 * n) % 2**32)
    return optuna.load_study(study_name=STUDY, storage=_storage(out), sampler=sampler,
                             pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER))


@contextlib.contextmanager
def _lock(out: Path):
    import fcntl

    with open(out / ".sweep.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _counted(trials) -> int:
    """Trials that count toward --trials: finished, running, or failed with an error (a trial cut
    short by an interruption has no error and runs again)."""
    from optuna.trial import TrialState

    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and "error" in t.user_attrs))


def _recipe(cfg: RunConfig, space: dict) -> dict:
    """What makes two sweeps the same sweep: the trials' options (less the output) and the space."""
    from nlpfit.config_file import as_dict
    from nlpfit.tasks import typed_config

    values = as_dict(typed_config(cfg))
    for name in ("output", "push_to_hub", "hub_model_id", *space):  # where it goes, not what it is
        values.pop(name, None)
    return {"config": json.loads(json.dumps(values, default=str)), "space": space}


def _prepare(out: Path, cfg: RunConfig, sopts: SweepOptions, space: dict, task_cls) -> None:
    """Create the sweep folder and its study, or (--resume) check it is the same sweep and mark the
    trials that were cut short to run again."""
    import optuna
    from optuna.trial import TrialState

    recipe = _recipe(cfg, space)
    exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if exists and not (cfg.resume or cfg.overwrite):
        raise NlpfitError(f"--output {out}: already exists and is not empty (add --resume to continue the sweep "
                          "in it, or --overwrite to replace it)")
    if exists and cfg.resume and not (out / "sweep.db").is_file():
        raise NlpfitError(f"--resume: {out} holds no sweep (no sweep.db)")
    if exists and cfg.overwrite and not cfg.resume:
        shutil.rmtree(out)
    (out / "trials").mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if task_cls.greater_is_better else "minimize"
    study = optuna.create_study(study_name=STUDY, storage=_storage(out), direction=direction, load_if_exists=True)
    stored = study.user_attrs.get("recipe")
    if stored is None:
        study.set_user_attr("recipe", recipe)
        study.set_user_attr("metric", task_cls.main_metric)
    elif stored != recipe:
        keys = sorted(k for k in set(stored["config"]) | set(recipe["config"])
                      if stored["config"].get(k) != recipe["config"].get(k))
        if stored["space"] != recipe["space"]:
            keys.append("the search space")
        raise NlpfitError(f"--resume: {out} is a sweep with other options ({', '.join(keys)}); run the command that "
                          f"started it (its options are in {out / 'sweep.yaml'}), or start a new sweep elsewhere")
    requeued = set(study.user_attrs.get("requeued", []))
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:  # its process is gone: the trial was cut short
            study.tell(t.number, state=TrialState.FAIL)
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL and "error" not in t.user_attrs and t.number not in requeued:
            info(f"trial {t.number:03d} was cut short: it runs again with the same parameters")
            study.enqueue_trial(t.params)
            requeued.add(t.number)
            shutil.rmtree(out / "trials" / f".{t.number:03d}.nlpfit-tmp", ignore_errors=True)
    study.set_user_attr("requeued", sorted(requeued))


def _trial_config(base: RunConfig, params: dict, folder: Path) -> RunConfig:
    common = {f.name for f in cli_fields(RunConfig)}
    task_options = {**dict(base.task_options or {}), **{k: v for k, v in params.items() if k not in common}}
    return base.replace(output=str(folder), overwrite=False, resume=False, push_to_hub=False,
                        task_options=task_options,
                        **{k: v for k, v in params.items() if k in common})


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def work(out: Path, worker: int = 0) -> None:
    """Run trials until the sweep has --trials of them (one worker; `--parallel K` runs K)."""
    from optuna.trial import TrialState

    from nlpfit import run
    from nlpfit.metrics import summary
    from nlpfit.tasks import task_class

    cfg, sopts, space = load(out)
    task_cls = task_class(cfg.task)
    metric = task_cls.main_metric
    dists = distributions(cfg.task, space)
    study = _study(out, task_cls, cfg.seed + worker)
    while True:
        with _lock(out):
            if _counted(study.get_trials(deepcopy=False)) >= sopts.trials:
                return
            trial = study.ask(dists)
        folder = out / "trials" / f"{trial.number:03d}"
        trial.set_user_attr("output", str(folder.relative_to(out)))
        info(f"trial {trial.number:03d}: " + ", ".join(f"{k} {_show(v)}" for k, v in trial.params.items()))
        stopped: list[int] = []

        def on_evaluate(step: int, metrics: dict, trial=trial, stopped=stopped) -> bool:
            value = metrics.get(metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return False
            trial.report(float(value), step)
            if sopts.prune and trial.should_prune():
                stopped.append(step)
                return True
            return False

        try:
            result = run.train(_trial_config(cfg, trial.params, folder), on_evaluate=on_evaluate)
        except NlpfitError as exc:  # the user's input: every trial would fail the same way
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # noqa: BLE001 (this trial's parameters failed: record it, go on)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}".splitlines()[0])
            study.tell(trial, state=TrialState.FAIL)
            warn(f"trial {trial.number:03d} failed: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        except BaseException:  # interrupted: no error recorded, so --resume runs it again
            study.tell(trial, state=TrialState.FAIL)
            raise
        value = summary(result["metrics"].get("eval") or {}).get(metric)
        trial.set_user_attr("steps", result["metrics"]["train"].get("steps"))
        if value is None:
            trial.set_user_attr("error", f"no validation {metric}")
            study.tell(trial, state=TrialState.FAIL)
            raise NlpfitError(f"the sweep scores trials by their validation {metric}, and the run had no validation "
                              "split: give data with one, or --validation-split")
        trial.set_user_attr("value", value)
        if stopped and not _ran_to_the_end(result["metrics"]["train"], result["config"]):
            info(f"trial {trial.number:03d}: pruned at step {stopped[0]} ({metric} {value:.4f})")
            study.tell(trial, state=TrialState.PRUNED)
        else:
            info(f"trial {trial.number:03d}: {metric} {value:.4f}")
            study.tell(trial, value)


def _ran_to_the_end(train: dict, cfg: RunConfig) -> bool:
    """Whether a run did all its steps (a "prune" at its last evaluation stops nothing: it stays a
    finished trial with its value)."""
    if cfg.max_steps > 0:
        return (train.get("steps") or 0) >= cfg.max_steps
    return (train.get("epochs") or 0) >= cfg.epochs - 1e-3


def load(out: Path) -> tuple[RunConfig, SweepOptions, dict]:
    """The sweep of a sweep folder, from OUT/sweep.yaml: (the trials' base configuration, the sweep
    options, the search space {name: spec})."""
    from nlpfit.config_file import read, run_config, train_fields

    cf = read(str(out / "sweep.yaml"))
    task = cf.task_for(None, "nlpfit sweep")
    values, _ = cf.values(train_fields(task))
    section = cf.section("sweep")
    sweep_values, _ = section.values(list(dataclasses.fields(SweepOptions)), skip=())
    space = {name: body for name, _, body in (s.partition("=") for s in sweep_values.pop("search", []))}
    return run_config(task, values), SweepOptions(**sweep_values), space


def _write_sweep_file(out: Path, cfg: RunConfig, sopts: SweepOptions, space: dict) -> None:
    from nlpfit.config_file import dump
    from nlpfit.tasks import typed_config

    section = {"sweep": {"trials": sopts.trials, "parallel": sopts.parallel, "prune": sopts.prune,
                         "search": {name: body for name, body in space.items()}}}
    text = dump(typed_config(cfg).replace(output=str(out)), sections=section, skip=tuple(space))
    text = text.replace("# nlpfit configuration: `nlpfit train --config THIS_FILE --output NEW` trains this run again;",
                        "# nlpfit sweep: `nlpfit sweep --config THIS_FILE --output NEW` runs this sweep again;")
    _write_atomic(out / "sweep.yaml", text)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _workers(out: Path, parallel: int) -> None:
    """`--parallel K`: K worker processes (`python -m nlpfit.sweep OUT I`) on the shared storage."""
    threads = max(1, (os.cpu_count() or 1) // parallel)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "nlpfit.sweep", str(out), str(i)], env=env)
             for i in range(parallel)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        raise
    errors = [(out / f".worker-{i}.error") for i in range(parallel)]
    messages = [e.read_text().strip() for e in errors if e.is_file()]
    for e in errors:
        e.unlink(missing_ok=True)
    if messages:
        raise NlpfitError(messages[0])
    if any(codes):
        raise NlpfitError(f"a sweep worker failed (exit status {max(codes)}); --resume continues the sweep")


def run_sweep(cfg: RunConfig, sopts: SweepOptions, *, where: Where = FLAGS, fixed: set[str] = frozenset()) -> dict:
    """Run (or, with cfg.resume, continue) a sweep in cfg.output; the summary: the table printed,
    the best trial, the rows."""
    from nlpfit.tasks import task_class

    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise NlpfitError("nlpfit sweep needs Optuna: pip install 'nlpfit[sweep]' (or pip install optuna)")
    check(cfg, where)
    check(sopts, where)
    space = search_space(cfg, list(sopts.search), where, set(fixed))
    task_cls = task_class(cfg.task)
    out = Path(cfg.output)
    _prepare(out, cfg, sopts, space, task_cls)
    _write_sweep_file(out, cfg, sopts, space)
    info(f"sweep of {cfg.task} in {out}: {sopts.trials} trials, {task_cls.main_metric} "
         f"{'maximised' if task_cls.greater_is_better else 'minimised'}; searching "
         + ", ".join(f"{k}={v}" for k, v in space.items()))
    if sopts.parallel > 1:
        _workers(out, sopts.parallel)
    else:
        work(out)
    summary = finish(out)
    if cfg.push_to_hub and summary["best"]:  # the trials never upload; the best model does
        from nlpfit.hub import push

        push(cfg.replace(output=str(out / "best"), hub_model_id=cfg.hub_model_id or out.name))
    return summary


# ---- the summary ------------------------------------------------------------------------------------
def rows(out: Path) -> tuple[list[dict], Any, str, list[str]]:
    """One row per trial (trial, state, metric, parameters, steps, folder), the best trial, the
    metric name and the parameter names."""
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=_storage(out))
    metric = study.user_attrs.get("metric", "value")
    trials = study.get_trials(deepcopy=False)
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    best = None
    with contextlib.suppress(ValueError):
        best = study.best_trial
    table = []
    for t in trials:
        value = t.value if t.value is not None else t.user_attrs.get("value")
        row = {"trial": t.number, "state": t.state.name.lower(), metric: value}
        row.update({k: t.params.get(k) for k in names})
        row.update(steps=t.user_attrs.get("steps"), output=t.user_attrs.get("output", ""),
                   best="*" if best is not None and t.number == best.number else "")
        table.append(row)
    return table, best, metric, names


def _format_table(table: list[dict], columns: list[str], metric: str) -> str:
    def cell(column, value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}" if column == metric else f"{value:.4g}"
        return str(value)

    cells = [columns] + [[cell(c, r.get(c)) for c in columns] for r in table]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def finish(out: Path) -> dict:
    """The table (OUT/sweep.csv), the best trial copied to OUT/best, OUT/report.html."""
    table, best, metric, names = rows(out)
    columns = ["trial", "state", metric, *names, "steps", "output", "best"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    _write_atomic(out / "sweep.csv", buf.getvalue())
    text = _format_table(table, columns, metric)
    best_line = None
    if best is not None:
        source = out / best.user_attrs["output"]
        tmp = out / ".best.nlpfit-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        old = out / ".best.nlpfit-old"
        if (out / "best").exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out / "best", old)
        os.replace(tmp, out / "best")
        shutil.rmtree(old, ignore_errors=True)
        params = ", ".join(f"{k} {_show(v)}" for k, v in best.params.items())
        best_line = f"best: trial {best.number:03d} ({metric} {best.value:.4f}; {params}), copied to {out / 'best'}"
    else:
        warn("no trial finished: no best model")
    _write_atomic(out / "report.html", report_html(out, table, columns, metric, best_line))
    info(f"saved {out / 'sweep.csv'}, {out / 'report.html'}")
    return {"table": text, "best": best_line, "rows": table}


def importance_svg(out: Path) -> tuple[str | None, dict]:
    """optuna.importance's parameter importances as an inline SVG bar chart (None, {} when they
    cannot be computed: too few finished trials, or parameters that did not vary)."""
    import optuna
    from matplotlib.figure import Figure

    study = optuna.load_study(study_name=STUDY, storage=_storage(out))
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None, {}
    if not importances or not all(math.isfinite(v) for v in importances.values()):
        return None, {}
    names = list(importances)[::-1]
    fig = Figure(figsize=(6, 0.5 + 0.45 * len(names)))
    ax = fig.add_subplot()
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel(f"importance for {study.user_attrs.get('metric', 'the objective')}")
    ax.set_xlim(0, 1)
    fig.tight_layout()
    svg = io.StringIO()
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = svg.getvalue()
    return text[text.index("<svg"):], importances


def report_html(out: Path, table: list[dict], columns: list[str], metric: str, best_line: str | None) -> str:
    """OUT/report.html: self-contained (no scripts, styles or images from the network)."""
    svg, importances = importance_svg(out)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)

    def cell(v):
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))

    body = "".join("<tr" + (' class="best"' if r.get("best") else "") + ">"
                   + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in table)
    plot = (svg if svg else "<p>Parameter importances need at least two finished trials whose parameters "
            "differ.</p>")
    listed = "".join(f"<li>{html.escape(k)}: {v:.3f}</li>" for k, v in importances.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nlpfit sweep: {html.escape(out.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}tr.best{{background:#e8f4e8;font-weight:bold}}</style>
</head><body>
<h1>Sweep {html.escape(out.name)}</h1>
<p>Objective: validation {html.escape(metric)}. {html.escape(best_line or "No trial finished.")}</p>
<h2>Trials</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Parameter importance</h2>
{plot}
<ul>{listed}</ul>
</body></html>
"""


def _worker_main(argv: list[str]) -> int:
    out, index = Path(argv[0]), int(argv[1])
    try:
        work(out, index)
    except NlpfitError as exc:
        (out / f".worker-{index}.error").write_text(str(exc), encoding="utf-8")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
