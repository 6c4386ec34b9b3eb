"""Question answering end to end on a tiny BERT: train (both engines) -> predictions.json -> evaluate -> predict."""

import json
import random

import pytest

FILLER = ("the statement is executed when the loop ends and the value of each name is bound in the local "
          "namespace of the function while a class body defines new attributes").split()
CODES = ["red fox", "blue whale", "green tea", "black cat", "white paper", "silver moon", "golden gate", "dark tower"]


def make_examples(n: int, seed: int, unanswerable: float = 0.0) -> list[dict]:
    """Contexts of filler sentences around one "The code is X Y." sentence; the question asks for it."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sentences = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(6, 12))).capitalize() + "."
                     for _ in range(rng.randint(3, 7))]
        answer = rng.choice(CODES)
        has = rng.random() >= unanswerable
        if has:
            sentences.insert(rng.randrange(len(sentences) + 1), f"The code is {answer}.")
        context = " ".join(sentences)
        start = context.find(f"The code is {answer}.") + len("The code is ") if has else -1
        rows.append({"id": f"ex{seed}-{i}", "context": context, "question": "What is the code?",
                     "answers": {"text": [answer] if has else [], "answer_start": [start] if has else []}})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def qa_data(tmp_path):
    folder = tmp_path / "qa"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", make_examples(240, seed=1, unanswerable=0.2))
    write_jsonl(folder / "validation.jsonl", make_examples(40, seed=2, unanswerable=0.2))
    return folder


COMMON = ("--max-length", 64, "--stride", 24, "--batch-size", 16, "--lr", 3e-3, "--eval-before")


@pytest.mark.parametrize("engine", ["accelerate", "trainer"])
def test_train_evaluate_predict(engine, tiny_bert, qa_data, tmp_path, run_cli):
    out = tmp_path / f"qa-{engine}"
    res = run_cli("train", "qa", "--data", qa_data, "--model", tiny_bert, "--output", out, "--engine", engine,
                  "--epochs", 2, *COMMON)
    assert res.code == 0, res.err
    metrics = json.loads((out / "metrics.json").read_text())
    history = [h["eval"] for h in metrics["history"]]
    before, after = history[0], metrics["eval"]
    assert after["f1"] > before["f1"] + 20  # the tiny model learns where the code is
    assert {"HasAns_f1", "NoAns_f1", "HasAns_total", "NoAns_total"} <= set(after)  # 20% have no answer
    run = json.loads((out / "run.json").read_text())
    assert run["task_data"]["null_answers"] is True

    validation = [json.loads(l) for l in (qa_data / "validation.jsonl").read_text().splitlines()]
    preds = json.loads((out / "predictions.json").read_text())
    assert set(preds) == {r["id"] for r in validation}
    for row in validation:
        assert preds[row["id"]] in row["context"]  # text cut from the context (or "")

    res = run_cli("evaluate", out, "--data", qa_data, "--split", "validation", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["f1"] == pytest.approx(after["f1"])
    res = run_cli("evaluate", out, "--data", qa_data / "validation.jsonl", "--json")  # one file: all of it
    assert res.code == 0, res.err
    assert json.loads(res.out)["f1"] == pytest.approx(after["f1"])

    row = validation[0]
    res = run_cli("predict", out, "--question", row["question"], "--context", row["context"])
    assert res.code == 0, res.err
    got = json.loads(res.out.splitlines()[0])
    assert got["answer"] == preds[row["id"]]
    if got["answer"]:
        assert row["context"][got["start"]:got["end"]] == got["answer"]
    assert 0.0 <= got["score"] <= 1.0

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "question": r["question"], "context": r["context"]}
                                                  for r in validation[:5]])
    res = run_cli("predict", out, "--input", inputs)
    assert res.code == 0, res.err
    rows = [json.loads(l) for l in res.out.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in validation[:5]]
    assert [r["answer"] for r in rows] == [preds[r["id"]] for r in validation[:5]]

    # the folder is a plain transformers question-answering model
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tok("What is the code?", "The code is red fox.", return_tensors="pt")).start_logits
    assert logits.shape[0] == 1

    # and transformers.pipeline loads it (transformers 5 has no built-in question-answering pipeline:
    # OUT ships one, with the same windows and post-processing)
    from transformers import pipeline

    qa = pipeline("question-answering", model=str(out), trust_remote_code=True)
    for row in validation[:5]:
        got = qa(question=row["question"], context=row["context"])
        assert got["answer"] == preds[row["id"]]
        assert set(got) == {"answer", "score", "start", "end"}


def test_long_contexts_are_answered_from_later_windows(tiny_bert, tmp_path, run_cli):
    """SQuAD 1.1 data (every question answered) with contexts of many windows."""
    folder = tmp_path / "long"
    folder.mkdir()
    rows = make_examples(150, seed=5)
    for r in rows:  # push the answer sentence far into the context
        pad = " ".join(["the loop ends."] * 30) + " "
        r["context"] = pad + r["context"]
        r["answers"]["answer_start"] = [s + len(pad) for s in r["answers"]["answer_start"]]
    write_jsonl(folder / "train.jsonl", rows[:120])
    write_jsonl(folder / "dev.jsonl", rows[120:])
    out = tmp_path / "qa-long"
    res = run_cli("train", "qa", "--data", folder, "--model", tiny_bert, "--output", out, "--epochs", 1, *COMMON)
    assert res.code == 0, res.err
    assert "windows" in res.err  # several windows per question
    metrics = json.loads((out / "metrics.json").read_text())
    assert "HasAns_f1" not in metrics["eval"]
    assert metrics["eval"]["windows"] >= 4 * 30
    assert metrics["eval"]["f1"] > metrics["history"][0]["eval"]["f1"] + 20
    preds = json.loads((out / "predictions.json").read_text())
    assert all(p for p in preds.values())  # SQuAD 1.1: never an empty answer
    from transformers import pipeline

    qa = pipeline("question-answering", model=str(out), trust_remote_code=True)
    for r in rows[120:125]:
        assert qa({"question": r["question"], "context": r["context"]})["answer"] == preds[r["id"]]


def one_error(res) -> str:
    """The run failed with exit 2 and exactly one error line, no traceback."""
    errors = [l for l in res.err.splitlines() if l.startswith("error:")]
    assert res.code == 2 and len(errors) == 1 and "Traceback" not in res.err, res.err
    return errors[0]


def test_bad_input_exits_2_with_one_line(tiny_bert, qa_data, tmp_path, run_cli):
    rows = make_examples(30, seed=9)
    rows[3]["answers"]["answer_start"] = [rows[3]["answers"]["answer_start"][0] + 2]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    res = run_cli("train", "qa", "--data", bad, "--model", tiny_bert, "--output", tmp_path / "o1")
    err = one_error(res)
    assert "ex9-3" in err and "--fix-answer-starts" in err

    res = run_cli("train", "qa", "--data", qa_data, "--model", tiny_bert, "--output", tmp_path / "o2",
                  "--max-length", 64, "--stride", 64)
    assert "--stride" in one_error(res)

    res = run_cli("train", "qa", "--data", tmp_path / "nope.jsonl", "--model", tiny_bert, "--output", tmp_path / "o3")
    assert "nope.jsonl" in one_error(res)

    (tmp_path / "cols.jsonl").write_text('{"question": "q", "context": "c"}\n{"question": "q", "context": "d"}\n')
    res = run_cli("train", "qa", "--data", tmp_path / "cols.jsonl", "--model", tiny_bert, "--output", tmp_path / "o4")
    assert "answers" in one_error(res)
