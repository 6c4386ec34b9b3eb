"""What a run leaves beside the model for people: example inputs, sample predictions, and for token
classification the confusion of entity types."""

import json

import pytest

from conftest import TINY_TASKS


@pytest.mark.parametrize("task", TINY_TASKS)
def test_examples_and_samples(task, tiny_models):
    from nlpfit.run import predict

    out = tiny_models(task)
    examples = json.loads((out / "examples.json").read_text())
    samples = json.loads((out / "samples.json").read_text())
    assert examples and len(samples) == min(4, len(examples))
    assert [s["input"] for s in samples] == examples[:len(samples)]
    # the samples are what `nlpfit predict` gives for those inputs
    assert [s["output"] for s in samples] == list(predict(str(out), examples[:len(samples)], {}))
    if task == "mlm":
        assert all("[MASK]" in e for e in examples)
    if task == "qa":
        assert all(set(e) == {"question", "context"} for e in examples)


def test_type_confusion_counts_words_by_type():
    from nlpfit.metrics.tagging import type_confusion

    got = type_confusion([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "B-LOC", "O", "O"]])
    assert got["labels"] == ["O", "LOC", "PER"]
    assert got["matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]


def test_ner_run_writes_the_confusion_of_its_last_evaluation(tiny_models):
    out = tiny_models("ner")
    confusion = json.loads((out / "confusion.json").read_text())
    assert confusion["labels"][0] == "O" and set(confusion["labels"]) <= {"O", "PER", "LOC", "ORG"}
    n = len(confusion["labels"])
    assert all(len(row) == n for row in confusion["matrix"]) and len(confusion["matrix"]) == n
    metrics = json.loads((out / "metrics.json").read_text())
    support = sum(v["support"] for v in metrics["eval"]["per_type"].values())
    assert sum(map(sum, confusion["matrix"])) >= support  # every evaluated word, entities among them


@pytest.mark.parametrize("task", TINY_TASKS)
def test_train_writes_the_run_report(task, tiny_models):
    out = tiny_models(task)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<svg" in page and "Sample predictions" in page
    assert f"<h1>{out.name}</h1>" in page or out.name in page.split("</h1>")[0]  # named after OUT, not the temp folder
    samples = json.loads((out / "samples.json").read_text())
    first = samples[0]["input"]
    shown = first["question"] if isinstance(first, dict) else first
    import html

    assert html.escape(shown.strip()[:20]) in page  # the samples are on the page


def test_a_model_that_cannot_predict_its_examples_keeps_its_run(tiny_bert, ner_data, tmp_path, run_cli,
                                                                 monkeypatch):
    """samples.json is a convenience: when predicting the examples fails, the run warns and is saved."""
    from nlpfit.tasks.token_classification import TokenClassification

    def broken(self, predictor, inputs, popts):
        raise RuntimeError("The size of tensor a (342) must match the size of tensor b (128)")

    monkeypatch.setattr(TokenClassification, "predict_with", broken)
    out = tmp_path / "out"
    res = run_cli("train", "ner", "--data", ner_data, "--model", tiny_bert, "--output", out, "--max-steps", 1)
    assert res.code == 0, res.err
    assert "warning: no samples.json: predicting the example inputs failed (The size of tensor a" in res.err
    assert (out / "model.safetensors").is_file() and (out / "examples.json").is_file()
    assert not (out / "samples.json").exists() and (out / "report.html").is_file()


def test_clm_trains_on_its_own_mean_loss_on_both_engines():
    """The causal LM hands the engines a loss function even without keyword weighting, so that Trainer
    does not rescale the model's mean loss by its own count of label tokens."""
    from nlpfit.config import RunConfig
    from nlpfit.tasks import make_task

    task = make_task(RunConfig(task="clm", data=["x"]))
    assert task.loss_function(None) is not None
