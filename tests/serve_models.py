"""Tiny trained models of each task kind for the serving tests (test_serve.py, test_playground.py),
trained once per test session into the session's temporary folder and reused by every module."""

from __future__ import annotations

import json
import random
import shutil
import sysconfig
from pathlib import Path

from conftest import corpus_text, make_ner_sentences, write_conll

KINDS = ("ner", "mlm", "translation", "summarization", "clm", "qa")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _train(args: list) -> None:
    import torch

    from nlpfit.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier than two threads on a small shared machine
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), f"training failed: {args}"
    finally:
        torch.set_num_threads(threads)


WORDS = {"red": "rouge", "green": "vert", "blue": "bleu", "big": "grand", "small": "petit",
         "cat": "chat", "dog": "chien", "house": "maison", "tree": "arbre"}


def _pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    adjs, nouns = list(WORDS)[:5], list(WORDS)[5:]
    rows = []
    for _ in range(n):
        adj, noun = rng.choice(adjs), rng.choice(nouns)
        rows.append({"translation": {"en": f"the {adj} {noun} is here .", "fr": f"le {WORDS[noun]} {WORDS[adj]} est ici ."}})
    return rows


FILLER = ("the statement is executed when the loop ends and the value of each name is bound in the local "
          "namespace of the function while a class body defines new attributes").split()
CODES = ["red fox", "blue whale", "green tea", "black cat"]


def qa_examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sentences = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(6, 10))).capitalize() + "."
                     for _ in range(rng.randint(2, 4))]
        answer = rng.choice(CODES)
        sentences.insert(rng.randrange(len(sentences) + 1), f"The code is {answer}.")
        context = " ".join(sentences)
        start = context.find(f"The code is {answer}.") + len("The code is ")
        rows.append({"id": f"q{seed}-{i}", "context": context, "question": "What is the code?",
                     "answers": {"text": [answer], "answer_start": [start]}})
    return rows


def build(kind: str, folder: Path, tiny_bert: Path) -> Path:
    """Train the tiny model of `kind` into folder/out (data beside it); returns the model folder."""
    out = folder / "out"
    if kind == "ner":
        write_conll(folder / "train.conll", make_ner_sentences(160, seed=1))
        write_conll(folder / "dev.conll", make_ner_sentences(40, seed=2))
        _train(["train", "ner", "--data", folder, "--model", tiny_bert, "--output", out, "--epochs", 3,
                "--batch-size", 8, "--lr", 3e-3])
    elif kind == "mlm":
        text = folder / "corpus.txt"
        text.write_text("\n".join(corpus_text()), encoding="utf-8")
        _train(["train", "mlm", "--data", text, "--model", tiny_bert, "--output", out, "--max-steps", 2,
                "--batch-size", 16, "--chunk-size", 32, "--train-size", 64, "--test-size", 16])
    elif kind == "translation":
        data = folder / "mt"
        data.mkdir()
        _jsonl(data / "train.jsonl", _pairs(120, 1))
        _jsonl(data / "dev.jsonl", _pairs(6, 2))
        _train(["train", "translation", "--data", data, "--output", out, "--max-steps", 2, "--scratch-dim", 32,
                "--scratch-layers", 1, "--vocab-size", 200, "--max-new-tokens", 8, "--batch-size", 8,
                "--eval-batch-size", 16, "--no-dedupe"])
    elif kind == "summarization":
        lines = [line for line in corpus_text() if len(line.split()) > 8][:60]
        rows = [{"review_body": f"{a} {b} {c}", "review_title": " ".join(a.split()[:5])}
                for a, b, c in zip(lines, lines[1:], lines[2:])]
        data = _jsonl(folder / "reviews.jsonl", rows)
        _train(["train", "summarization", "--data", data, "--model", tiny_bert, "--output", out,
                "--text-column", "review_body", "--summary-column", "review_title", "--max-steps", 2,
                "--max-source-length", 64, "--max-target-length", 16, "--max-new-tokens", 6, "--batch-size", 8,
                "--max-eval-samples", 4])
    elif kind == "clm":
        code = folder / "code"
        code.mkdir()
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        files = sorted((stdlib / "json").glob("*.py")) + sorted((stdlib / "email").glob("*.py"))
        for p in [p for p in files if p.stat().st_size > 200][:16]:
            shutil.copy(p, code / p.name)
        _train(["train", "clm", "--data", code, "--filter-keywords", "", "--vocab-size", 300, "--n-layer", 1,
                "--n-embd", 32, "--n-head", 2, "--context-length", 32, "--validation-split", 0.25, "--max-steps", 2,
                "--batch-size", 8, "--output", out])
    elif kind == "qa":
        data = folder / "qa"
        data.mkdir()
        _jsonl(data / "train.jsonl", qa_examples(48, 1))
        _jsonl(data / "validation.jsonl", qa_examples(8, 2))
        _train(["train", "qa", "--data", data, "--model", tiny_bert, "--output", out, "--max-steps", 2,
                "--max-length", 64, "--stride", 24, "--batch-size", 16])
    else:
        raise ValueError(kind)
    return out


def tiny_model(kind: str, tmp_path_factory, tiny_bert: Path) -> Path:
    """The tiny model of `kind`, trained on first use in this test session."""
    folder = tmp_path_factory.getbasetemp() / "serve-models" / kind
    if (folder / "out" / "run.json").is_file():
        return folder / "out"
    if folder.exists():
        shutil.rmtree(folder)  # a run that failed half-way
    folder.mkdir(parents=True)
    out = build(kind, folder, tiny_bert)
    # these servers offer their built-in examples (test_serve writes an examples.json where it tests that)
    (out / "examples.json").unlink(missing_ok=True)
    return out
