"""The three things a user does: train, evaluate, predict.  cli.py parses flags and calls these."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

from nlpfit import NlpfitError, __version__
from nlpfit.config import RunConfig, save_json
from nlpfit.log import info


# ---- the output folder: written aside, moved into place at the end -----------------------------
class OutputDir:
    """OUT is built in a hidden sibling folder (with the checkpoints and the trackers' event files)
    and moved into place when complete, so a crash never leaves half a model; `--resume` finds the
    checkpoints there, and the event files written before the interruption."""

    def __init__(self, out: Path, overwrite: bool, resume: bool, is_main: bool = True):
        from nlpfit.engines import checkpoints

        self.out = out
        self.work = out.parent / f".{out.name}.nlpfit-tmp"
        self.checkpoints = self.work / "checkpoints"
        self.runs = self.work / "runs"  # TensorBoard event files: OUT/runs/ in the end
        self.uploads = self.work / "uploads"  # checkpoints waiting for their --hub-strategy every-save upload
        self.staging = self.work / "final"
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            raise NlpfitError(f"--output {out}: already exists and is not empty (add --overwrite to replace it)")
        if is_main:
            if self.work.exists() and not resume:
                shutil.rmtree(self.work)
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            checkpoints.clear_partial(self.checkpoints)  # what a killed run was writing
            for folder in (self.staging, self.uploads):
                if folder.exists():
                    shutil.rmtree(folder)
            self.staging.mkdir()

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


def check_train_options(cfg: RunConfig) -> None:
    """The run's numeric and tracker options, checked before anything loads (one error line)."""
    from nlpfit.engines import tracking

    if cfg.logging_steps < 1:
        raise NlpfitError(f"--logging-steps {cfg.logging_steps}: must be at least 1")
    if cfg.save_steps < 0:
        raise NlpfitError(f"--save-steps {cfg.save_steps}: must be at least 0 (0: a checkpoint every epoch)")
    if cfg.save_total_limit < 1:
        raise NlpfitError(f"--save-total-limit {cfg.save_total_limit}: must be at least 1")
    if cfg.hub_strategy != "end" and not cfg.push_to_hub:
        raise NlpfitError(f"--hub-strategy {cfg.hub_strategy}: needs --push-to-hub")
    tracking.check(cfg.report_to)


def train(cfg: RunConfig) -> dict:
    from accelerate import PartialState

    from nlpfit.engines import get_engine
    from nlpfit.engines.loop import cpu_distributed, evaluate as run_eval, seed_everything
    from nlpfit.report.card import model_card
    from nlpfit.tasks import make_task

    check_train_options(cfg)
    state = PartialState(cpu=cpu_distributed())
    cfg = resolve(cfg)
    task = make_task(cfg)
    out = OutputDir(cfg.out, cfg.overwrite, cfg.resume, state.is_main_process)
    state.wait_for_everyone()
    engine = get_engine(cfg.engine)
    started = time.time()

    seed_everything(cfg.seed)
    raw, facts = task.load_data()
    raw = limit_samples(raw, cfg)
    model, tokenizer = task.build(raw, facts)
    features, facts = task.preprocess(raw, tokenizer, model.config, facts, training=True)

    uploads = None
    if cfg.push_to_hub and cfg.hub_strategy == "every-save" and state.is_main_process:
        from nlpfit.hub import CheckpointUploads

        uploads = CheckpointUploads(cfg, out.uploads)
    result = engine(task, cfg, model, tokenizer, features, raw, facts, out.checkpoints, runs_dir=out.runs,
                    on_checkpoint=uploads)
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
        custom = bool(getattr(result.model.config, "custom_pipelines", None))
        (out.staging / "README.md").write_text(model_card(task, cfg, metrics, task_data, custom_pipeline=custom),
                                               encoding="utf-8")
        task.extra_artifacts(out.staging, predictions)
        if uploads is not None:
            uploads.wait()  # the checkpoints' uploads read the spool inside the temp folder
        out.commit()
        info(f"saved {cfg.out}")
    state.wait_for_everyone()
    if cfg.push_to_hub and state.is_main_process:
        from nlpfit.hub import push

        push(cfg)
    return {"metrics": metrics, "task": task, "config": cfg}


def data_sources(cfg: RunConfig) -> list[dict]:
    """What each --data value loaded: the catalogue's source for the course's names, else the value."""
    from nlpfit.data.catalog import resolved_source

    return [resolved_source(spec, cfg.data_config) or {"spec": spec} for spec in cfg.data]


# ---- using a trained model ------------------------------------------------------------------------
def load_run(out_dir: str) -> tuple[RunConfig, dict]:
    """The frozen configuration a model folder was trained with (task options typed), and run.json."""
    from nlpfit.tasks import typed_config

    path = Path(out_dir)
    if not path.is_dir():
        raise NlpfitError(f"{out_dir}: no such model folder")
    run_file = path / "run.json"
    if not run_file.is_file():
        raise NlpfitError(f"{out_dir}: not an nlpfit model folder (no run.json)")
    run = json.loads(run_file.read_text())
    known = {f.name for f in fields(RunConfig)}
    cfg = RunConfig(**{k: v for k, v in run["config"].items() if k in known})
    return typed_config(cfg), run


def evaluate(out_dir: str, data: list[str] | None, split: str, batch_size: int | None) -> dict:
    from nlpfit.engines.loop import evaluate as run_eval
    from nlpfit.tasks import make_task

    cfg, _ = load_run(out_dir)
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
    result = run_eval(task, model, tokenizer, features[split], raw[split], facts, cfg.eval_batch_size)
    return {"task": task, "metrics": result.metrics}


def predict_options(task, values: dict):
    """The task's PredictOptions from option values (None or absent: the default; a batch size of 0:
    the training run's --eval-batch-size)."""
    popts = task.PredictOptions(**{f.name: values[f.name] for f in fields(task.PredictOptions)
                                   if values.get(f.name) is not None})
    if not popts.batch_size:
        popts = dataclasses.replace(popts, batch_size=task.cfg.eval_batch_size)
    return popts


def predict(out_dir: str, inputs: list, popts_values: dict):
    from nlpfit.tasks import make_task

    cfg, _ = load_run(out_dir)
    task = make_task(cfg)
    return task.predict(out_dir, inputs, predict_options(task, popts_values))
