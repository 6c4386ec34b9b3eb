"""Reading question-answering data: SQuAD JSON v1.1/v2.0, flat files, answer offsets, the offline demo set."""

import json

import pytest

from nlpfit import NlpfitError
from nlpfit.data.squad import check_answers, check_ids, python_docs_squad, read_file, to_dataset

CTX = "Super Bowl 50 was played in 2016. The Denver Broncos won it."


def nested(version: str) -> dict:
    qas = [{"id": "q1", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 38},
                                                             {"text": "Broncos", "answer_start": 45}]}]
    if version == "v2.0":
        qas.append({"id": "q2", "question": "Who lost in 1990?", "is_impossible": True, "answers": [],
                    "plausible_answers": [{"text": "Denver Broncos", "answer_start": 38}]})
    return {"version": version, "data": [{"title": "Super_Bowl_50", "paragraphs": [{"context": CTX, "qas": qas}]}]}


@pytest.mark.parametrize("version", ["1.1", "v2.0"])
def test_nested_squad_json(tmp_path, version):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(nested(version)))
    ds = read_file(path)
    assert ds[0] == {"id": "q1", "title": "Super_Bowl_50", "context": CTX, "question": "Who won?",
                     "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [38, 45]}}
    if version == "v2.0":  # unanswerable: no answers, plausible ones are not answers
        assert ds[1]["answers"] == {"text": [], "answer_start": []}
    check_answers(ds, str(path))


def test_flat_jsonl_csv_and_list_of_answers(tmp_path):
    rows = [{"id": "a", "context": CTX, "question": "When?", "answers": {"text": ["2016"], "answer_start": [28]}},
            {"id": "b", "context": CTX, "question": "Who?", "answers": [{"text": "Denver Broncos", "answer_start": 38}]}]
    for i, row in enumerate(rows):  # one shape per file: {text: [...], answer_start: [...]} or a list of answers
        jl = tmp_path / f"train{i}.jsonl"
        jl.write_text(json.dumps(row) + "\n" + json.dumps(dict(row, id=row["id"] + "2")) + "\n")
        ds = read_file(jl)
        assert ds["answers"][0] == [{"text": ["2016"], "answer_start": [28]},
                                    {"text": ["Denver Broncos"], "answer_start": [38]}][i]
        assert ds["id"] == [row["id"], row["id"] + "2"]
    import csv

    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "context", "answers"])
        w.writerow(["a", "When?", CTX, json.dumps({"text": ["2016"], "answer_start": [28]})])
        w.writerow(["c", "Who lost?", CTX, ""])
    ds = read_file(path)
    assert ds["id"] == ["a", "c"] and ds[1]["answers"] == {"text": [], "answer_start": []}
    assert ds[0]["answers"]["answer_start"] == [28]


def test_wrong_answer_start_lists_the_ids_or_is_fixed(tmp_path):
    rows = [{"id": "ok", "title": "", "context": CTX, "question": "When?",
             "answers": {"text": ["2016"], "answer_start": [28]}},
            {"id": "off-by-one", "title": "", "context": CTX, "question": "Who?",
             "answers": {"text": ["Denver Broncos"], "answer_start": [37]}},
            {"id": "elsewhere", "title": "", "context": CTX + " Broncos fans cheered.", "question": "Who cheered?",
             "answers": {"text": ["Broncos fans"], "answer_start": [0]}}]
    ds = to_dataset(rows)
    with pytest.raises(NlpfitError, match=r"2 questions \(ids off-by-one, elsewhere\).*--fix-answer-starts"):
        check_answers(ds, "--data x")
    fixed = check_answers(ds, "--data x", fix=True)
    assert [a["answer_start"] for a in fixed["answers"]] == [[28], [38], [len(CTX) + 1]]
    for row in fixed:
        s = row["answers"]["answer_start"][0]
        assert row["context"][s:s + len(row["answers"]["text"][0])] == row["answers"]["text"][0]
    rows[1]["answers"]["text"] = ["Kansas City"]
    with pytest.raises(NlpfitError, match=r"not in the context.*off-by-one"):
        check_answers(to_dataset(rows), "--data x", fix=True)


def test_bad_files(tmp_path):
    dup = to_dataset([{"id": "x", "title": "", "context": CTX, "question": q, "answers": {"text": [], "answer_start": []}}
                      for q in ("a", "b")])
    with pytest.raises(NlpfitError, match="duplicate question ids"):
        check_ids(dup, "--data d")
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [ {"context": "x", "qas": [}]}]}')
    with pytest.raises(NlpfitError, match=r"bad.json:1: invalid JSON"):
        read_file(bad)
    nested_bad = tmp_path / "n.json"
    nested_bad.write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(NlpfitError, match=r"paragraphs\[0\] has no context"):
        read_file(nested_bad)
    cell = tmp_path / "c.csv"
    cell.write_text('id,question,context,answers\na,q,ctx,"{not json"\n')
    with pytest.raises(NlpfitError, match="row 1: answers is not JSON"):
        read_file(cell)


def test_offline_demo_set_from_the_python_language_reference():
    raw = python_docs_squad(0.1, 0.1)
    assert set(raw) == {"train", "validation", "test"}
    assert len(raw["train"]) > 300 and len(raw["validation"]) >= 40 and len(raw["test"]) >= 40
    contexts = {split: set(ds["context"]) for split, ds in raw.items()}
    assert not contexts["train"] & contexts["validation"] and not contexts["train"] & contexts["test"]
    questions = [q for ds in raw.values() for q in ds["question"]]
    grammar = sum(q.startswith("What is the grammar rule for ") for q in questions)
    returns = sum(q.startswith("What does ") and q.endswith(" return?") for q in questions)
    assert grammar >= 50 and returns >= 200 and len(questions) - grammar - returns >= 30  # definitions
    row = next(r for r in raw["train"] if r["question"] == "What does shlex.quote return?")
    assert row["answers"]["text"] == ["a shell-escaped version of the string *s*"]
    assert "shlex.quote(s)" in row["context"]
    for ds in raw.values():
        check_answers(ds, "demo")  # every answer_start points at its text
        check_ids(ds, "demo")
    assert python_docs_squad(0.1, 0.1)["test"]["id"] == raw["test"]["id"]  # deterministic
