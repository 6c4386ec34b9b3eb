"""End to end on a tiny BERT: train a few steps -> save -> evaluate -> predict -> transformers.pipeline."""

import json

import pytest


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_train_evaluate_predict(engine, tiny_bert, ner_data, tmp_path, run_cli):
    out = tmp_path / f"out-{engine}"
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--engine", engine,
                  "--epochs", 2, "--batch-size", 8, "--lr", 3e-3)
    assert res.code == 0, res.err
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "run.json", "README.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"train", "eval", "history", "test"}
    assert [h["epoch"] for h in metrics["history"] if "train_loss" in h][-1] == pytest.approx(2)
    assert metrics["eval"]["f1"] > 0.5  # templated entities are easy
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and "B-PER" in config["label2id"]

    res = run_cli("evaluate", out, "--split", "validation", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["f1"] == pytest.approx(metrics["eval"]["f1"])

    res = run_cli("predict", out, "Alice moved to Paris last year .")
    row = json.loads(res.out.splitlines()[0])
    assert row["text"].startswith("Alice")
    for ent in row["entities"]:
        assert row["text"][ent["start"]:ent["end"]].lower() == ent["word"].replace(" ##", "").replace("##", "").lower() or ent["word"]

    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(out), aggregation_strategy="simple")
    assert isinstance(pipe("Bob works for Google in Berlin ."), list)
