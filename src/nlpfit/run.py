"""The three things a user does: train, evaluate, predict.  cli.py parses flags and calls these, and
so does the Python API (`nlpfit.api`).  Each checks every option against its declared range
(`config.check`) before it loads anything or makes a folder; `where` says how the user wrote the
options (flags, a config file, keyword arguments), so that a problem names them in the user's terms."""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

from nlpfit import NlpfitError, __version__
from nlpfit.allocator import keep_freed_memory
from nlpfit.config import FLAGS, EvaluateOptions, RunConfig, Where, check, save_json
from nlpfit.log import info, warn


# ---- the output folder: written aside, moved into place at the end -----------------------------
def check_output(out: Path, overwrite: bool, option: str = "--output") -> None:
    """Refuse, before anything is read or made, an output folder that cannot be written: a file, a
    path under a file, a non-empty folder without `overwrite`, or no folder name at all."""
    if out.name in ("", ".", ".."):
        raise NlpfitError(f"{option} {out}: name the folder to create (e.g. {option} runs/model)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NlpfitError(f"{option} {out}: {parent} is a file, not a folder")
            break
    if out.exists() and not out.is_dir():
        raise NlpfitError(f"{option} {out}: is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise NlpfitError(f"{option} {out}: already exists and is not empty (add --overwrite to replace it)")


def check_output_keeps_data(cfg: RunConfig) -> None:
    """OUT is replaced at the end of a run: it must not be, or hold, a --data file or folder."""
    if not cfg.out.exists():
        return
    out = cfg.out.resolve()
    for spec in cfg.data:
        local = Path(os.path.expanduser(str(spec)))
        if local.exists():
            path = local.resolve()
            if path == out or out in path.parents:
                raise NlpfitError(f"--output {cfg.out}: holds --data {spec}, which replacing it would delete")


def has_checkpoint(folder: Path) -> bool:
    """Whether `folder` holds a saved training checkpoint (of either engine) that --resume continues from."""
    return any((ckpt / name).is_file() for ckpt in folder.glob("checkpoint-*")
               for name in ("state.json", "trainer_state.json"))


class OutputDir:
    """OUT is built in a hidden sibling folder (with the checkpoints and the trackers' event files)
    and moved into place when complete, so a crash never leaves half a model; `--resume` finds the
    checkpoints there, and the event files written before the interruption.

    Making the object only checks OUT (`check_output`); `start` makes the hidden folder when training
    starts, and a failed run calls `abandon`: the hidden folder goes, unless it holds the checkpoint
    of a saved training step (then the checkpoints stay, for `--resume`)."""

    def __init__(self, out: Path, overwrite: bool, resume: bool, is_main: bool = True):
        check_output(out, overwrite)
        self.out = out
        self.work = out.parent / f".{out.name}.nlpfit-tmp"
        self.checkpoints = self.work / "checkpoints"
        self.runs = self.work / "runs"  # TensorBoard event files: OUT/runs/ in the end
        self.uploads = self.work / "uploads"  # checkpoints waiting for their --hub-strategy every-save upload
        self.staging = self.work / "final"
        self.resume, self.is_main = resume, is_main

    def start(self) -> None:
        from nlpfit.engines import checkpoints

        if not self.is_main:
            return
        try:
            if self.work.exists() and not self.resume:
                shutil.rmtree(self.work)
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            checkpoints.clear_partial(self.checkpoints)  # what a killed run was writing
            for folder in (self.staging, self.uploads):
                if folder.exists():
                    shutil.rmtree(folder)
            self.staging.mkdir()
        except OSError as exc:
            self.abandon()
            raise NlpfitError(f"--output {self.out}: cannot create {self.work} ({exc.strerror or exc})") from None

    def abandon(self) -> None:
        """After a failure: remove what the run made, keeping saved checkpoints for --resume."""
        if not self.is_main or not self.work.exists():
            return
        if not has_checkpoint(self.checkpoints):
            shutil.rmtree(self.work, ignore_errors=True)
            return
        shutil.rmtree(self.checkpoints / ".partial", ignore_errors=True)  # a checkpoint the failure cut short
        for item in self.work.iterdir():
            if item != self.checkpoints:
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
        info(f"kept the checkpoints in {self.checkpoints}: run the same command with --resume to continue")

    def commit(self) -> None:
        if self.runs.exists():
            os.replace(self.runs, self.staging / "runs")
        backup = None
        if self.out.exists():
            backup = self.out.parent / f".{self.out.name}.nlpfit-old"
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(self.out, backup)
        os.replace(self.staging, self.out)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def versions() -> dict:
    import accelerate
    import datasets
    import tokenizers
    import torch
    import transformers

    return {"nlpfit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "datasets": datasets.__version__,
            "accelerate": accelerate.__version__, "tokenizers": tokenizers.__version__}


def resolve(cfg: RunConfig) -> RunConfig:
    """The run's configuration: the task's offline defaults for --model and --data filled in (with
    the default data's hold-out where --validation-split/--test-split are not given, and the task
    options that go with it), task options typed.  A new, frozen RunConfig."""
    from nlpfit.tasks import make_task, task_class

    probe = make_task(cfg)  # default_model / default_data may depend on the task's options
    changes: dict = {}
    if not cfg.model:
        changes["model"] = probe.default_model()
        info(f"--model not given: using {changes['model']}")
    if not cfg.data:
        validation, test = task_class(cfg.task).default_split
        changes["data"] = list(probe.default_data())
        changes["validation_split"] = validation if cfg.validation_split is None else cfg.validation_split
        changes["test_split"] = test if cfg.test_split is None else cfg.test_split
        extra = probe.default_data_options()
        if extra:
            changes["task_options"] = dataclasses.replace(probe.opts, **extra)
        info(f"--data not given: using {', '.join(changes['data'])} "
             f"(held out: {changes['validation_split']:.0%} validation, {changes['test_split']:.0%} test)")
    return make_task(cfg.replace(**changes)).cfg


def limit_samples(raw, cfg: RunConfig):
    """--max-train-samples / --max-eval-samples: the first N examples of each split."""
    import datasets

    out = datasets.DatasetDict(dict(raw)) if isinstance(raw, datasets.DatasetDict) else dict(raw)
    if cfg.max_train_samples and "train" in out and hasattr(out["train"], "select"):  # a stream takes its own
        out["train"] = out["train"].select(range(min(cfg.max_train_samples, len(out["train"]))))
    if cfg.max_eval_samples:
        for split in ("validation", "test"):
            if split in out:
                out[split] = out[split].select(range(min(cfg.max_eval_samples, len(out[split]))))
    return out


def check_tracking(cfg: RunConfig) -> None:
    """--hub-strategy and --report-to, checked before anything loads (one error line)."""
    from nlpfit.engines import tracking

    if cfg.hub_strategy != "end" and not cfg.push_to_hub:
        raise NlpfitError(f"--hub-strategy {cfg.hub_strategy}: needs --push-to-hub")
    tracking.check(cfg.report_to)


def train(cfg: RunConfig, *, where: Where = FLAGS, on_evaluate=None) -> dict:
    """Train a model as `cfg` says and save it in `cfg.output`: the metrics, the task and the
    resolved configuration.  `on_evaluate(step, metrics) -> bool` (optional) is called after every
    evaluation with its flat metrics; it returns whether to stop training there (the sweep's pruning)."""
    check(cfg, where)
    check_tracking(cfg)
    keep_freed_memory()
    from accelerate import PartialState

    from nlpfit.engines import get_engine
    from nlpfit.engines.loop import cpu_distributed, seed_everything
    from nlpfit.tasks import make_task

    state = PartialState(cpu=cpu_distributed())
    cfg = resolve(cfg)
    task = make_task(cfg)
    out = OutputDir(cfg.out, cfg.overwrite, cfg.resume, state.is_main_process)  # checked; nothing made yet
    check_output_keeps_data(cfg)
    engine = get_engine(cfg.engine)
    started = time.time()

    seed_everything(cfg.seed)
    raw, facts = task.load_data()
    raw = limit_samples(raw, cfg)
    model, tokenizer = task.build(raw, facts)
    features, facts = task.preprocess(raw, tokenizer, model.config, facts, training=True)

    out.start()  # training starts: the hidden folder is made now, and removed again if the run fails
    try:
        state.wait_for_everyone()
        metrics = _train_and_save(task, cfg, engine, model, tokenizer, features, raw, facts, out, state, started,
                                  on_evaluate)
    except BaseException:
        out.abandon()
        raise
    state.wait_for_everyone()
    if cfg.push_to_hub and state.is_main_process:
        from nlpfit.hub import push

        push(cfg)
    return {"metrics": metrics, "task": task, "config": cfg}


def _train_and_save(task, cfg, engine, model, tokenizer, features, raw, facts, out: OutputDir, state,
                    started: float, on_evaluate=None) -> dict:
    """Train with `engine`, evaluate the test split, save OUT aside and move it into place; the metrics."""
    from nlpfit.engines.loop import evaluate as run_eval
    from nlpfit.report.card import model_card
    from nlpfit.report.html import write_report

    uploads = None
    if cfg.push_to_hub and cfg.hub_strategy == "every-save" and state.is_main_process:
        from nlpfit.hub import CheckpointUploads

        uploads = CheckpointUploads(cfg, out.uploads)
    result = engine(task, cfg, model, tokenizer, features, raw, facts, out.checkpoints, runs_dir=out.runs,
                    on_checkpoint=uploads, on_evaluate=on_evaluate)
    metrics = {"train": result.train, "eval": result.eval, "history": result.history, "log": result.log}
    predictions = result.predictions
    if "test" in features:
        test = run_eval(task, result.model, tokenizer, features["test"], raw["test"], facts, cfg.eval_batch_size,
                        result.accelerator, desc="evaluating (test)")
        metrics["test"], predictions = test.metrics, test.predictions

    weights = result.accelerator.get_state_dict(result.model)  # on every process: FSDP gathers its shards
    if state.is_main_process:
        result.model.save_pretrained(out.staging, state_dict=weights)
        tokenizer.save_pretrained(out.staging)
        task_data = task.card_data(facts, result.model, tokenizer)
        save_json(out.staging / "metrics.json", metrics)
        save_json(out.staging / "run.json", {
            "task": cfg.task, "pipeline": task.pipeline, "config": cfg.to_dict(),
            "data_sources": data_sources(cfg), "task_data": task_data, "seed": cfg.seed, "versions": versions(),
            "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "runtime_s": round(time.time() - started, 1), "num_processes": state.num_processes,
            "device": str(state.device)})
        (out.staging / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        custom = bool(getattr(result.model.config, "custom_pipelines", None))
        (out.staging / "README.md").write_text(model_card(task, cfg, metrics, task_data, custom_pipeline=custom),
                                               encoding="utf-8")
        task.extra_artifacts(out.staging, predictions)
        write_examples(task, raw, out.staging)
        write_report(out.staging)
        if uploads is not None:
            uploads.wait()  # the checkpoints' uploads read the spool inside the temp folder
        out.commit()
        info(f"saved {cfg.out}")
    return metrics


EXAMPLES = 8  # inputs kept in OUT/examples.json
SAMPLES = 4  # of which predicted into OUT/samples.json


def write_examples(task, raw, folder: Path) -> None:
    """OUT/examples.json: inputs made from held-out examples (the playground's examples); OUT/samples.json:
    what the saved model predicts for the first few ({"input", "output"}: the run report's samples)."""
    split = next((s for s in ("validation", "test") if s in raw), None)
    if split is None or not hasattr(raw[split], "select"):
        return
    examples = task.example_inputs(raw[split], EXAMPLES)
    if not examples:
        return
    save_json(folder / "examples.json", examples)
    try:  # a convenience for the report: a model that cannot predict them keeps its run
        popts = predict_options(task, {})
        rows = list(task.predict_with(task.load_predictor(str(folder)), examples[:SAMPLES], popts))
    except Exception as exc:  # noqa: BLE001 (any failure: one warning, no samples)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warn(f"no samples.json: predicting the example inputs failed ({msg})")
        return
    save_json(folder / "samples.json", [{"input": x, "output": row} for x, row in zip(examples, rows)])


def dump_config(cfg: RunConfig) -> str:
    """OUT/config.yaml: the resolved configuration as a config file that trains the run again."""
    from nlpfit.config_file import dump

    return dump(cfg)


def data_sources(cfg: RunConfig) -> list[dict]:
    """What each --data value loaded: the catalogue's source for the course's names, else the value."""
    from nlpfit.data.catalog import resolved_source

    return [resolved_source(spec, cfg.data_config) or {"spec": spec} for spec in cfg.data]


# ---- using a trained model ------------------------------------------------------------------------
def load_run(out_dir: str) -> tuple[RunConfig, dict]:
    """The frozen configuration a model folder was trained with (task options typed), and run.json;
    a damaged run.json is an error naming it and what is wrong."""
    from nlpfit.config import check_types
    from nlpfit.data import read_json_object
    from nlpfit.tasks import REGISTRY, task_class, typed_config

    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise NlpfitError(f"{out_dir}: is a file, not a model folder")
    if not path.is_dir():
        raise NlpfitError(f"{out_dir}: no such model folder")
    run_file = path / "run.json"
    if not run_file.is_file():
        raise NlpfitError(f"{out_dir}: not an nlpfit model folder (no run.json)")
    run = read_json_object(run_file)
    config = run.get("config")
    if not isinstance(config, dict):
        raise NlpfitError(f"{run_file}: no \"config\" object (the configuration of the run)")
    task = config.get("task") or run.get("task")
    if not isinstance(task, str) or not task:
        raise NlpfitError(f"{run_file}: names no task")
    if task not in REGISTRY:
        raise NlpfitError(f"{run_file}: unknown task {task!r} (nlpfit trains {', '.join(REGISTRY)})")
    known = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in config.items() if k in known}
    values["task"] = task
    check_types(RunConfig, values, f"{run_file}: config")
    options = values.get("task_options")
    if options is not None and not isinstance(options, dict):
        raise NlpfitError(f"{run_file}: config.task_options is not an object")
    check_types(task_class(task).Options, options or {}, f"{run_file}: config.task_options")
    if not isinstance(run.get("task_data", {}), dict):
        raise NlpfitError(f"{run_file}: task_data is not an object")
    return typed_config(RunConfig(**values)), run


def evaluate(out_dir: str, data: list[str] | None, split: str, batch_size: int | None, precision: str = "fp32", *,
             where: Where = FLAGS) -> dict:
    from nlpfit.engines.loop import evaluate as run_eval
    from nlpfit.tasks import make_task

    from nlpfit.models import check_model_folder

    check(EvaluateOptions(data=list(data or []), split=split, batch_size=batch_size, precision=precision), where)
    keep_freed_memory()
    cfg, _ = load_run(out_dir)
    check_model_folder(out_dir)  # a damaged folder is reported before any data is read
    changes: dict = {}
    if data:
        changes.update(data=list(data), data_config=None)
    if batch_size:
        changes["eval_batch_size"] = batch_size
    one_file = bool(data) and len(data) == 1 and Path(data[0]).is_file()
    if one_file:
        changes.update(validation_split=0.0, test_split=0.0)  # one file: evaluate all of it
    cfg = cfg.replace(**changes)
    task = make_task(cfg)
    raw, facts = task.load_data(trained=task.trained_facts(out_dir))
    if len(raw) == 1 and one_file:
        split = next(iter(raw))
    if split not in raw:
        raise NlpfitError(f"--split {split}: the data has no such split (it has {', '.join(raw)})")
    raw = {split: raw[split]}
    model, tokenizer = task.load_trained(out_dir)
    features, facts = task.preprocess(raw, tokenizer, model.config, facts, training=False)
    result = run_eval(task, model, tokenizer, features[split], raw[split], facts, cfg.eval_batch_size,
                      precision=precision)
    return {"task": task, "metrics": result.metrics}


def predict_options(task, values: dict, where: Where = FLAGS):
    """The task's PredictOptions from option values (None or absent: the default; a batch size of 0:
    the training run's --eval-batch-size), checked against their declarations; a value given for an
    option the task does not have is an error."""
    known = [f.name for f in fields(task.PredictOptions)]
    for name, value in values.items():
        if value is not None and name not in known:
            raise NlpfitError(f"{where.label(name)}: {task.cfg.task or task.name} models have no such prediction "
                              f"option (they take {', '.join(where.label(k) for k in known)})")
    popts = task.PredictOptions(**{name: values[name] for name in known if values.get(name) is not None})
    check(popts, where)
    if not popts.batch_size:
        popts = dataclasses.replace(popts, batch_size=task.cfg.eval_batch_size)
    return popts


def predict(out_dir: str, inputs: list, popts_values: dict, *, where: Where = FLAGS):
    from nlpfit.models import check_model_folder
    from nlpfit.tasks import make_task

    cfg, _ = load_run(out_dir)
    task = make_task(cfg)
    popts = predict_options(task, popts_values, where)  # the options first, then the folder's files, the inputs
    check_model_folder(out_dir)
    task.check_inputs(out_dir, inputs, popts)
    keep_freed_memory()
    return task.predict_with(task.load_predictor(out_dir), inputs, popts)
