"""Engine behaviour: resume after an interruption, equal metrics from both engines, two processes."""

import json
from pathlib import Path

import pytest
import torch

from conftest import torchrun_then_evaluate


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _train_args(tiny_bert, ner_data, out, engine, *extra):
    return ["train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--engine", engine,
            "--epochs", 2, "--batch-size", 16, "--lr", 3e-3, "--seed", 7, *extra]


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_resume_gives_the_same_weights(engine, tiny_bert, ner_data, tmp_path, run_cli, monkeypatch):
    full = tmp_path / "full"
    assert run_cli(*_train_args(tiny_bert, ner_data, full, engine)).code == 0

    # interrupt the second run (Ctrl-C) right after its first checkpoint is in place (end of epoch 1)
    out = tmp_path / "resumed"
    import nlpfit.engines.checkpoints as checkpoints

    original = checkpoints.publish

    def publish_then_interrupt(*a, **k):
        original(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "publish", publish_then_interrupt)
    assert run_cli(*_train_args(tiny_bert, ner_data, out, engine)).code == 130
    assert not out.exists()
    assert list((tmp_path / ".resumed.nlpfit-tmp" / "checkpoints").glob("checkpoint-*"))
    monkeypatch.undo()

    res = run_cli(*_train_args(tiny_bert, ner_data, out, engine, "--resume"))
    assert res.code == 0, res.err
    assert "resuming from checkpoint-" in res.err
    a, b = _weights(full), _weights(out)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    hist_full = json.loads((full / "metrics.json").read_text())["history"]
    hist_res = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["eval"]["f1"] for h in hist_full] == pytest.approx([h["eval"]["f1"] for h in hist_res])


def test_both_engines_give_equal_metrics_for_the_same_model(tiny_bert, ner_data, tmp_path, run_cli):
    """Each engine's own evaluation of one saved model gives the same figures."""
    from nlpfit.engines.trainer import trainer_class
    from nlpfit.engines.loop import evaluate
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task
    from transformers import Trainer, TrainingArguments

    out = tmp_path / "out"
    assert run_cli(*_train_args(tiny_bert, ner_data, out, "accelerate", "--epochs", 1)).code == 0
    cfg, _ = load_run(str(out))
    task = make_task(cfg)
    raw, facts = task.load_data(trained=task.trained_facts(str(out)))
    model, tok = task.load_trained(str(out))
    feats, facts = task.preprocess(raw, tok, model.config, facts, training=False)
    ours = evaluate(task, model, tok, feats["validation"], raw["validation"], facts, batch_size=7).metrics
    trainer = trainer_class(Trainer)(model=model, args=TrainingArguments(str(tmp_path / "t"), report_to="none"),
                                     data_collator=task.collator(tok, model), processing_class=tok, task=task,
                                     features=feats, raw=raw, facts=facts, eval_batch_size=64)
    theirs = trainer.evaluate()
    saved = json.loads((out / "metrics.json").read_text())["eval"]
    assert ours["f1"] == pytest.approx(theirs["eval_f1"]) == pytest.approx(saved["f1"])
    assert ours["loss"] == pytest.approx(theirs["eval_loss"], rel=1e-5)
    assert ours["per_type"] == saved["per_type"]


def test_two_processes_match_one(tiny_bert, ner_data, tmp_path):
    """`torchrun --nproc_per_node 2` on CPU (gloo): the 2-process eval metrics equal a 1-process evaluation."""
    out = tmp_path / "ddp"
    args = _train_args(tiny_bert, ner_data, out, "accelerate", "--epochs", 1, "--eval-batch-size", 5)
    metrics, single = torchrun_then_evaluate(args, out, 29517)
    for key in ("precision", "recall", "f1", "accuracy"):
        assert metrics["eval"][key] == pytest.approx(single[key]), key
    assert metrics["eval"]["loss"] == pytest.approx(single["loss"], rel=1e-4)
    assert metrics["eval"]["per_type"] == single["per_type"]
