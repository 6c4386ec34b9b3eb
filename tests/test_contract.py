"""The task contract: a frozen configuration, typed task options held once, hooks declared on Task,
and no state set on a task from outside or left by one hook for another."""

import dataclasses
import inspect

import pytest

from nlpfit.config import RunConfig


def test_resolve_fills_defaults_without_overriding_the_user():
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config

    cfg = default_config("ner", output="unused")
    resolved = resolve(cfg)
    assert resolved is not cfg and cfg.model is None and cfg.data == []  # the input is not changed
    assert resolved.data and resolved.model
    assert (resolved.validation_split, resolved.test_split) == (0.1, 0.1)  # the default data's hold-out
    mine = resolve(default_config("ner", output="unused", validation_split=0.2))
    assert (mine.validation_split, mine.test_split) == (0.2, 0.1)  # what the user gave is kept
    clm = resolve(default_config("clm", output="unused"))
    assert (clm.validation_split, clm.test_split) == (0.05, 0.0)
    assert clm.task_options.filter_keywords == "pandas,sklearn,matplotlib,seaborn"  # goes with the default data
    given = resolve(default_config("ner", output="unused", data=["some/folder.conll"]))
    assert (given.validation_split, given.test_split) == (0.1, 0.0)


def test_config_is_frozen_and_task_options_are_typed_once():
    from nlpfit.tasks import make_task
    from nlpfit.tasks.token_classification import Options

    task = make_task(RunConfig(task="pos", data=["x"], task_options={"max_length": 64}))
    assert isinstance(task.cfg.task_options, Options) and task.opts is task.cfg.task_options
    assert task.opts.label_column == "pos_tags" and task.opts.max_length == 64  # preset, then given
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.cfg.lr = 1.0
    assert set(vars(task)) == {"cfg"}


def test_every_hook_the_engines_call_is_declared_on_task_with_a_docstring():
    from pathlib import Path

    import nlpfit
    from nlpfit.tasks import REGISTRY, task_class
    from nlpfit.tasks.base import Task

    root = Path(nlpfit.__file__).parent
    engine_code = "\n".join((root / "engines" / f).read_text() for f in ("accelerate.py", "trainer.py", "loop.py"))
    engine_code += (root / "run.py").read_text()
    called = {name for name, _ in inspect.getmembers(Task, inspect.isfunction) if f"task.{name}(" in engine_code}
    assert {"load_data", "build", "preprocess", "collator", "eval_collator", "loss_function", "eval_step",
            "compute_metrics", "trainer_classes", "training_arguments", "extra_artifacts", "card_data",
            "trained_facts", "load_trained"} <= called
    for name in called:
        assert getattr(Task, name).__doc__, name
    for name in REGISTRY:  # a task's hooks keep the declared signatures
        cls = task_class(name)
        for hook in called:
            ours, declared = inspect.signature(getattr(cls, hook)), inspect.signature(getattr(Task, hook))
            assert list(ours.parameters) == list(declared.parameters), (name, hook)


@pytest.fixture
def tasks_made(monkeypatch):
    """Every task `nlpfit.tasks.make_task` builds from now on, in order."""
    from nlpfit.tasks import make_task

    seen = []

    def recording(cfg):
        task = make_task(cfg)
        seen.append(task)
        return task

    monkeypatch.setattr("nlpfit.tasks.make_task", recording)
    return seen


def test_a_run_sets_nothing_on_the_task(tiny_bert, ner_data, tmp_path, tasks_made):
    """Training and evaluating leave the task as it was built: only its frozen configuration."""
    from nlpfit import run

    seen = tasks_made
    cfg = RunConfig(task="ner", data=[str(ner_data)], model=str(tiny_bert), output=str(tmp_path / "out"),
                    max_steps=2, eval_batch_size=8)
    run.train(cfg)
    run.evaluate(str(tmp_path / "out"), None, "test", None)
    assert seen and all(set(vars(t)) == {"cfg"} for t in seen)


def test_prediction_options_carry_their_batch_size(tiny_bert, ner_data, tmp_path, run_cli):
    from nlpfit.run import load_run, predict_options
    from nlpfit.tasks import make_task

    out = tmp_path / "out"
    assert run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--max-steps", 1,
                   "--eval-batch-size", 7).code == 0
    task = make_task(load_run(str(out))[0])
    assert predict_options(task, {}).batch_size == 7 == task.cfg.eval_batch_size
    assert predict_options(task, {"batch_size": 3}).batch_size == 3 and task.cfg.eval_batch_size == 7


def test_a_clm_run_with_its_data_cache_sets_nothing_on_the_task(tmp_path, monkeypatch, tasks_made):
    """The causal LM's prepared-data cache travels in its Facts, not on the task (trained twice: the
    second run reads the documents and blocks back from the cache)."""
    import sysconfig
    from pathlib import Path

    from nlpfit import run

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "code"
    data.mkdir()
    for p in sorted((Path(sysconfig.get_paths()["stdlib"]) / "json").glob("*.py"))[:4]:
        (data / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    seen = tasks_made
    for n in (1, 2):
        cfg = RunConfig(task="clm", data=[str(data)], output=str(tmp_path / f"out{n}"), max_steps=1, batch_size=4,
                        validation_split=0.3,
                        task_options={"filter_keywords": "", "vocab_size": 300, "n_layer": 1, "n_embd": 32, "n_head": 2,
                                      "context_length": 32})
        run.train(cfg)
    assert len(seen) >= 2 and all(set(vars(t)) == {"cfg"} for t in seen)
