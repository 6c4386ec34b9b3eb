"""Malformed input for every command, as a table: each case writes a bad file, folder or damaged model
and runs one command line, which must exit with status 2 after printing exactly one `error:` line
(no traceback) and leave nothing on disk (no OUT, no hidden `.OUT.nlpfit-tmp`, no tokenizer folder,
no change to the damaged inputs).

Most cases fail while the data or options are read, before any model loads.  The damaged model
folders are copies of one tiny model per task, trained once per session with `--max-steps 1`."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import corpus_text, make_ner_sentences, write_conll

# ---- the tiny trained models ------------------------------------------------------------------------
SEQ2SEQ_TINY = ["--scratch-dim", 32, "--scratch-layers", 1, "--vocab-size", 120, "--max-new-tokens", 3,
                "--max-source-length", 24, "--max-target-length", 8, "--eval-batch-size", 32]
CLM_TINY = ["--n-layer", 1, "--n-embd", 16, "--n-head", 2, "--context-length", 16, "--vocab-size", 280,
            "--filter-keywords", ""]
QA_CONTEXT = "The code of the door is red fox. Nothing else is written on the wall of the room."


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _qa_rows(n: int) -> list[dict]:
    start = QA_CONTEXT.index("red fox")
    return [{"id": f"q{i}", "context": QA_CONTEXT, "question": "What is the code?",
             "answers": {"text": ["red fox"], "answer_start": [start]}} for i in range(n)]


def _mt_rows(n: int) -> list[dict]:
    words = [("cat", "chat"), ("dog", "chien"), ("house", "maison"), ("tree", "arbre"), ("car", "voiture")]
    return [{"translation": {"en": f"the {a} is here {i}", "fr": f"le {b} est ici {i}"}}
            for i, (a, b) in enumerate(words * (n // len(words)))]


def _sum_rows(n: int) -> list[dict]:
    lines = [l for l in corpus_text() if len(l.split()) > 6][:n]
    return [{"text": line, "summary": " ".join(line.split()[:3])} for line in lines]


def _code_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        (folder / f"m{i}.py").write_text(
            "".join(f"def f{i}_{k}(x, y):\n    return x * {k} + y - {i}\n\n" for k in range(12)), encoding="utf-8")
    return folder


def _train_data(task: str, root: Path) -> list:
    """--data (and options) of a tiny training run of `task`."""
    root.mkdir(parents=True, exist_ok=True)
    if task in ("ner", "pos", "chunk"):
        d = root / "conll"
        d.mkdir(parents=True, exist_ok=True)
        write_conll(d / "train.conll", make_ner_sentences(24, seed=1), columns=4)
        write_conll(d / "dev.conll", make_ner_sentences(6, seed=2), columns=4)
        return [d]
    if task == "mlm":
        f = root / "text.txt"
        f.write_text("\n".join(corpus_text()[:60]), encoding="utf-8")
        return [f, "--chunk-size", 16, "--no-eval-before"]
    if task == "qa":
        return [_jsonl(root / "qa.jsonl", _qa_rows(12)), "--max-length", 48, "--stride", 8]
    if task == "translation":
        return [_jsonl(root / "mt.jsonl", _mt_rows(40)), *SEQ2SEQ_TINY]
    if task == "summarization":
        return [_jsonl(root / "sum.jsonl", _sum_rows(40)), *SEQ2SEQ_TINY]
    if task == "clm":
        return [_code_folder(root / "code"), *CLM_TINY, "--validation-split", 0.3]
    raise KeyError(task)


def _main(*args) -> int:
    from nlpfit.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_bert) -> Callable[[str], Path]:
    """task -> the folder of a tiny model trained for one step (trained when first asked for)."""
    root = tmp_path_factory.mktemp("malformed-models")
    done: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in done:
            data, *extra = _train_data(task, root / f"{task}-data")
            model = [] if task in ("translation", "summarization", "clm") else ["--model", tiny_bert]
            out = root / task
            code = _main("train", task, "--data", data, *model, "--output", out, "--max-steps", 1,
                         "--batch-size", 4, *extra)
            assert code == 0, f"training the tiny {task} model failed"
            done[task] = out
        return done[task]

    return get



# ---- the harness ------------------------------------------------------------------------------------
@dataclass
class Env:
    """What a case's setup gets: its own folder (also the working directory), the tiny BERT, and the
    tiny trained models."""

    root: Path
    bert: Path
    trained: Callable[[str], Path]

    @property
    def out(self) -> Path:
        return self.root / "OUT"

    def write(self, name: str, content) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def model(self, task: str, damage: Callable[[Path], None] | None = None) -> Path:
        """A copy of the tiny trained `task` model, damaged by `damage`."""
        folder = self.root / f"{task}-model"
        shutil.copytree(self.trained(task), folder)
        if damage is not None:
            damage(folder)
        return folder


#: case id -> (setup(env) -> command line, fragments the error line must hold ({root}: the case folder))
CASES: dict[str, tuple[Callable[[Env], list], tuple[str, ...]]] = {}


def case(name: str, *expect: str):
    def register(setup):
        assert name not in CASES, name
        CASES[name] = (setup, expect)
        return setup
    return register


def train_args(env: Env, task: str, data, *extra) -> list:
    """`nlpfit train TASK` on `data` with the task's tiny settings (a later --model in `extra` wins)."""
    model = ["--model", env.bert] if task in ("ner", "pos", "chunk", "mlm", "qa") else []
    tiny = {"translation": SEQ2SEQ_TINY, "summarization": SEQ2SEQ_TINY, "clm": CLM_TINY,
            "qa": ["--max-length", 48, "--stride", 8], "mlm": ["--chunk-size", 16]}.get(task, [])
    data = [] if data is None else ["--data", data]
    return ["train", task, *data, *model, "--output", env.out, "--max-steps", 1, *tiny, *extra]


def data_case(name: str, task: str, filename: str, content, *expect: str, extra=()):
    """A case that trains `task` on one bad file (or folder) written as `filename`."""
    case(name, *expect)(lambda env: train_args(env, task, env.write(filename, content), *extra))


def snapshot(root: Path) -> set:
    return {(str(p.relative_to(root)), p.is_dir(), 0 if p.is_dir() else p.stat().st_size,
             0 if p.is_dir() else p.stat().st_mtime_ns) for p in root.rglob("*")}


# ---- file contents ------------------------------------------------------------------------------------
def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def parquet(table: dict):
    def write(path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(table), path)
    return write


def truncated_parquet(table: dict):
    def write(path: Path):
        parquet(table)(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return write


def folder(files: dict):
    """A folder of files (name -> content); nested names make sub-folders."""
    def write(path: Path):
        path.mkdir()
        for name, content in files.items():
            f = path / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content, encoding="utf-8")
    return write


DEEP = "[" * 100_000 + "]" * 100_000  # nests past the JSON parser's recursion limit
CONLL = "EU\tB-ORG\nrejects\tO\nGerman\tB-MISC\n\nPeter\tB-PER\nBlackburn\tI-PER\n"
NER_ROW = {"tokens": ["EU", "rejects", "German"], "ner_tags": ["B-ORG", "O", "B-MISC"]}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\xff\xfe\xfd"

# ---- train ner / pos / chunk: CoNLL ---------------------------------------------------------------------
data_case("ner-conll-empty", "ner", "e.conll", "", "{root}/e.conll", "empty")
data_case("ner-conll-blank-lines", "ner", "b.conll", "\n  \n\t\n", "{root}/b.conll", "no sentences")
data_case("ner-conll-docstart-only", "ner", "d.conll", "-DOCSTART- -X- -X- O\n\n", "d.conll", "no sentences")
data_case("ner-conll-one-column", "ner", "one.conll", "EU\nrejects\n", "{root}/one.conll:1", "one column")
data_case("ner-conll-ragged", "ner", "r.conll", "EU B-ORG\nrejects O\n\nGerman JJ B-MISC\n", "{root}/r.conll:4",
          "3 columns")
data_case("ner-conll-latin1", "ner", "l.conll", "Paris B-LOC\n\nZ\xfcrich B-LOC\n".encode("latin-1"),
          "{root}/l.conll:3", "not UTF-8")
data_case("ner-conll-binary", "ner", "img.conll", PNG, "{root}/img.conll", "not UTF-8")
data_case("ner-folder-no-splits", "ner", "d", folder({"notes.txt": CONLL}), "{root}/d", "no train/validation/test")
data_case("ner-folder-two-trains", "ner", "d", folder({"train.conll": CONLL, "train.jsonl": jsonl(NER_ROW)}),
          "two files for the train split")
data_case("ner-folder-no-train", "ner", "d", folder({"dev.conll": CONLL}), "no train split")
data_case("ner-folder-empty", "ner", "d", folder({}), "{root}/d", "no train/validation/test")
data_case("ner-dev-unseen-tags", "ner", "d", folder({"train.conll": CONLL, "dev.conll": "Tesla\tB-CAR\n"}),
          "validation split", "B-CAR")
data_case("ner-dev-ragged", "ner", "d", folder({"train.conll": CONLL, "dev.conll": "a O\nb O X\n"}),
          "{root}/d/dev.conll:2")
data_case("pos-conll4-ragged", "pos", "p.conll", "EU NNP B-NP B-ORG\nrejects VBZ B-VP\n", "{root}/p.conll:2",
          "3 columns")
data_case("chunk-conll4-latin1", "chunk", "c.conll", "EU NNP B-NP B-ORG\n\nZ\xfcrich NNP B-NP B-LOC\n".encode("latin-1"),
          "{root}/c.conll:3", "not UTF-8")
data_case("ner-conll-xlsx", "ner", "sheet.xlsx", b"PK\x03\x04\x14\x00\x06\x00\xfa\xfb", "{root}/sheet.xlsx")

# ---- token classification: JSON Lines ----------------------------------------------------------------------
data_case("ner-jsonl-invalid", "ner", "t.jsonl", jsonl(NER_ROW, "{oops"), "{root}/t.jsonl:2", "invalid JSON")
data_case("ner-jsonl-array-line", "ner", "t.jsonl", jsonl(NER_ROW, "[1, 2]"), "{root}/t.jsonl:2", "JSON object")
data_case("ner-jsonl-tokens-int", "ner", "t.jsonl", jsonl({"tokens": 5, "ner_tags": ["O"]}, {"tokens": 6, "ner_tags": ["O"]}),
          "{root}/t.jsonl:1", "tokens")
data_case("ner-jsonl-tokens-null", "ner", "t.jsonl", jsonl(NER_ROW, {"tokens": None, "ner_tags": ["O"]}),
          "{root}/t.jsonl:2", "tokens")
data_case("ner-jsonl-tags-int", "ner", "t.jsonl", jsonl({"tokens": ["a"], "ner_tags": 3}, {"tokens": ["b"], "ner_tags": 4}),
          "{root}/t.jsonl:1", "ner_tags")
data_case("ner-jsonl-tags-null", "ner", "t.jsonl", jsonl(NER_ROW, {"tokens": ["a"], "ner_tags": None}),
          "{root}/t.jsonl:2", "ner_tags")
data_case("ner-jsonl-tokens-object", "ner", "t.jsonl", jsonl({"tokens": {"a": 1}, "ner_tags": ["O"]}),
          "{root}/t.jsonl:1", "tokens")
data_case("ner-jsonl-tokens-nested", "ner", "t.jsonl", jsonl({"tokens": [["EU"], ["x"]], "ner_tags": ["O", "O"]}),
          "{root}/t.jsonl:1", "tokens")
data_case("ner-jsonl-deep", "ner", "t.jsonl", jsonl(NER_ROW, '{"tokens": ' + DEEP + "}"), "{root}/t.jsonl:2")
data_case("ner-jsonl-broken-list-string", "ner", "t.jsonl", jsonl({"tokens": "[1, 2", "ner_tags": "O O"}),
          "{root}/t.jsonl:1", "tokens")
data_case("ner-jsonl-mixed-types", "ner", "t.jsonl", jsonl(NER_ROW, {"tokens": "EU rejects", "ner_tags": ["O", "O"]}),
          "{root}/t.jsonl")
data_case("ner-jsonl-length-mismatch", "ner", "t.jsonl", jsonl(NER_ROW, {"tokens": ["a", "b"], "ner_tags": ["O"]}),
          "{root}/t.jsonl:2", "2 tokens", "1 tags")
data_case("ner-jsonl-no-tokens", "ner", "t.jsonl", jsonl({"words": ["a"], "ner_tags": ["O"]}), "--tokens-column")
data_case("ner-jsonl-no-tags", "ner", "t.jsonl", jsonl({"tokens": ["a"], "pos_tags": ["DT"]}), "--label-column ner_tags")
data_case("ner-jsonl-blank", "ner", "t.jsonl", "\n\n  \n", "{root}/t.jsonl", "empty")
data_case("ner-jsonl-latin1", "ner", "t.jsonl", '{"tokens": ["Z\xfcrich"], "ner_tags": ["B-LOC"]}\n'.encode("latin-1"),
          "{root}/t.jsonl:1", "not UTF-8")
data_case("ner-jsonl-string-line", "ner", "t.jsonl", jsonl(NER_ROW, '"just a string"'), "{root}/t.jsonl:2",
          "JSON object")
data_case("pos-jsonl-tags-null", "pos", "p.jsonl", jsonl({"tokens": ["a"], "pos_tags": None}), "{root}/p.jsonl:1",
          "pos_tags")
data_case("chunk-jsonl-no-column", "chunk", "c.jsonl", jsonl({"tokens": ["a"], "ner_tags": ["O"]}),
          "--label-column chunk_tags")

# ---- token classification: JSON, CSV, TSV, Parquet --------------------------------------------------------
data_case("ner-json-numbers", "ner", "t.json", "[1, 2, 3]", "{root}/t.json", "record 1")
data_case("ner-json-strings", "ner", "t.json", '["EU rejects", "German"]', "{root}/t.json", "record 1")
data_case("ner-json-data-number", "ner", "t.json", '{"data": 5}', "{root}/t.json", "list of records")
data_case("ner-json-scalar", "ner", "t.json", "5\n", "{root}/t.json")
data_case("ner-json-invalid", "ner", "t.json", '[{"tokens": ["a"],\n "ner_tags": ["O"]\n', "{root}/t.json",
          "invalid JSON")
data_case("ner-json-deep", "ner", "t.json", DEEP, "{root}/t.json")
data_case("ner-json-tokens-int", "ner", "t.json", json.dumps([{"tokens": 1, "ner_tags": ["O"]}] * 2), "{root}/t.json",
          "record 1", "tokens")
data_case("ner-json-empty-list", "ner", "t.json", "[]", "{root}/t.json", "no records")
data_case("ner-json-mixed-records", "ner", "t.json", json.dumps([NER_ROW, {"tokens": 5, "ner_tags": "O"}]),
          "{root}/t.json")
data_case("ner-csv-broken-list", "ner", "t.csv", 'tokens,ner_tags\n"[1, 2","O O"\n', "{root}/t.csv:2", "tokens")
data_case("ner-csv-broken-python-list", "ner", "t.csv", "tokens,ner_tags\n\"['EU', \",O\n", "{root}/t.csv:2", "tokens")
data_case("ner-csv-list-of-dicts", "ner", "t.csv", 'tokens,ner_tags\n"[{""a"": 1}]",O\n', "{root}/t.csv:2", "tokens")
data_case("ner-csv-fields", "ner", "t.csv", "tokens,ner_tags\nEU rejects,O O,extra\n", "{root}/t.csv:2", "3 fields")
data_case("ner-csv-header-only", "ner", "t.csv", "tokens,ner_tags\n", "{root}/t.csv", "no rows")
data_case("ner-csv-empty", "ner", "t.csv", "", "{root}/t.csv", "empty")
data_case("ner-csv-no-tokens", "ner", "t.csv", "words,ner_tags\nEU,B-ORG\n", "--tokens-column")
data_case("ner-csv-length-mismatch", "ner", "t.csv", 'tokens,ner_tags\n"EU rejects German","B-ORG O"\n',
          "{root}/t.csv:2", "3 tokens", "2 tags")
data_case("ner-csv-latin1", "ner", "t.csv", "tokens,ner_tags\nZ\xfcrich,B-LOC\n".encode("latin-1"), "{root}/t.csv:2",
          "not UTF-8")
data_case("ner-tsv-ragged", "ner", "t.tsv", "EU\tB-ORG\nrejects\tO\tX\n", "{root}/t.tsv:2", "3 columns")
data_case("ner-parquet-garbage", "ner", "t.parquet", b"PAR1 this is not parquet", "{root}/t.parquet", "Parquet")
data_case("ner-parquet-truncated", "ner", "t.parquet", truncated_parquet({"tokens": [["EU"]] * 50, "ner_tags": [["O"]] * 50}),
          "{root}/t.parquet", "Parquet")
data_case("ner-parquet-tokens-int", "ner", "t.parquet", parquet({"tokens": [1, 2], "ner_tags": [["O"], ["O"]]}),
          "{root}/t.parquet", "row 1", "tokens")
data_case("ner-parquet-tags-null", "ner", "t.parquet", parquet({"tokens": [["a"], ["b"]], "ner_tags": [["O"], None]}),
          "{root}/t.parquet", "row 2", "ner_tags")
data_case("ner-parquet-no-tokens", "ner", "t.parquet", parquet({"words": [["a"]], "ner_tags": [["O"]]}),
          "--tokens-column")
data_case("ner-parquet-no-rows", "ner", "t.parquet", parquet({"tokens": [["a"]][:0], "ner_tags": [["O"]][:0]}),
          "{root}/t.parquet", "no rows")
data_case("pos-parquet-garbage", "pos", "p.parquet", b"\x00" * 64, "{root}/p.parquet", "Parquet")
data_case("chunk-csv-broken-list", "chunk", "c.csv", 'tokens,chunk_tags\n"[""EU""","[B-NP"\n', "{root}/c.csv:2")

# ---- train mlm: text files, tables, folders of documents -----------------------------------------------
data_case("mlm-txt-empty", "mlm", "c.txt", "", "{root}/c.txt", "empty")
data_case("mlm-txt-blank", "mlm", "c.txt", "\n \n\t\n", "empty corpus")
data_case("mlm-txt-latin1", "mlm", "c.txt", "one line\ntwo \xe9t\xe9\n".encode("latin-1"), "{root}/c.txt:2", "not UTF-8")
data_case("mlm-txt-binary", "mlm", "c.txt", PNG * 3, "{root}/c.txt", "not UTF-8")
data_case("mlm-jsonl-no-column", "mlm", "c.jsonl", jsonl({"review": "good film"}), "--text-column", "review")
data_case("mlm-jsonl-text-int", "mlm", "c.jsonl", jsonl({"text": 5}, {"text": 6}), "{root}/c.jsonl", "not text")
data_case("mlm-jsonl-text-list", "mlm", "c.jsonl", jsonl({"text": ["a", "b"]}), "{root}/c.jsonl", "not text")
data_case("mlm-jsonl-invalid", "mlm", "c.jsonl", jsonl({"text": "fine"}, '{"text": "unterminated'), "{root}/c.jsonl:2",
          "invalid JSON")
data_case("mlm-jsonl-deep", "mlm", "c.jsonl", jsonl('{"text": ' + DEEP + "}"), "{root}/c.jsonl:1")
data_case("mlm-json-numbers", "mlm", "c.json", "[1, 2]", "{root}/c.json", "record 1")
data_case("mlm-csv-no-column", "mlm", "c.csv", "body\nsome text\n", "{root}/c.csv", "--text-column")
data_case("mlm-csv-fields", "mlm", "c.csv", "text\na,b\n", "{root}/c.csv:2", "2 fields")
data_case("mlm-tsv-latin1", "mlm", "c.tsv", "text\ncaf\xe9\n".encode("latin-1"), "{root}/c.tsv:2", "not UTF-8")
data_case("mlm-parquet-garbage", "mlm", "c.parquet", b"not parquet at all", "{root}/c.parquet", "Parquet")
data_case("mlm-parquet-text-int", "mlm", "c.parquet", parquet({"text": [1, 2, 3]}), "{root}/c.parquet", "not text")
data_case("mlm-docs-empty-folder", "mlm", "docs", folder({}), "{root}/docs", "empty corpus",
          extra=["--document-per-file"])
data_case("mlm-docs-latin1", "mlm", "docs", folder({"a.txt": "fine", "b.txt": "caf\xe9".encode("latin-1")}),
          "{root}/docs/b.txt:1", "not UTF-8", extra=["--document-per-file"])
data_case("mlm-docs-two-dev-folders", "mlm", "docs", folder({"train/a.txt": "x y", "dev/b.txt": "x", "val/c.txt": "y"}),
          "two folders for the validation split", extra=["--document-per-file"])
data_case("mlm-docs-on-a-file", "mlm", "c.txt", "some text\n", "--document-per-file", extra=["--document-per-file"])
data_case("mlm-folder-no-splits", "mlm", "docs", folder({"a.txt": "some text"}), "{root}/docs", "no train/validation/test")
data_case("mlm-train-split-missing", "mlm", "c.txt", "some text\n" * 5, "--train-split unsupervised",
          extra=["--train-split", "train", "--train-split", "unsupervised"])
data_case("mlm-too-short-for-a-block", "mlm", "c.txt", "tiny\n" * 3, "fewer than", extra=["--chunk-size", 64,
                                                                                        "--validation-split", 0])

# ---- train translation: gettext catalogs and tables --------------------------------------------------
PO_HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: fr\\n"\n\n'
data_case("mt-po-garbage", "translation", "fr.po", "this is not\na catalog at all\n", "{root}/fr.po", "gettext")
data_case("mt-po-untranslated", "translation", "fr.po", PO_HEADER + 'msgid "File"\nmsgstr ""\n', "{root}/fr.po",
          "no translated entries")
data_case("mt-po-fuzzy-only", "translation", "fr.po", PO_HEADER + '#, fuzzy\nmsgid "File"\nmsgstr "Fichier"\n',
          "{root}/fr.po", "no translated entries")
data_case("mt-po-latin1", "translation", "fr.po", (PO_HEADER + 'msgid "Caf"\nmsgstr "Caf\xe9"\n').encode("latin-1"),
          "{root}/fr.po")
data_case("mt-po-unterminated", "translation", "fr.po", PO_HEADER + 'msgid "File\nmsgstr "Fichier"\n', "{root}/fr.po")
data_case("mt-mo-garbage", "translation", "fr.mo", b"this is not a compiled catalog", "{root}/fr.mo", "gettext")
data_case("mt-mo-truncated", "translation", "fr.mo", b"\xde\x12\x04\x95\x00\x00\x00\x00\x05\x00", "{root}/fr.mo")
data_case("mt-jsonl-translation-string", "translation", "t.jsonl", jsonl({"translation": "the cat"}),
          "translation column", "en/fr")
data_case("mt-jsonl-no-target", "translation", "t.jsonl", jsonl({"translation": {"en": "cat", "de": "Katze"}}),
          "en/fr")
data_case("mt-jsonl-translation-null", "translation", "t.jsonl", jsonl(*[{"translation": None}] * 3), "en/fr")
data_case("mt-jsonl-no-columns", "translation", "t.jsonl", jsonl({"source": "cat", "target": "chat"}),
          "--translation-column")
data_case("mt-jsonl-target-list", "translation", "t.jsonl", jsonl({"en": "cat", "fr": ["chat", "matou"]}),
          "{root}/t.jsonl", "fr", "not text")
data_case("mt-jsonl-invalid", "translation", "t.jsonl", jsonl({"en": "a", "fr": "b"}, "{"), "{root}/t.jsonl:2",
          "invalid JSON")
data_case("mt-jsonl-deep", "translation", "t.jsonl", jsonl('{"en": ' + DEEP + "}"), "{root}/t.jsonl:1")
data_case("mt-json-numbers", "translation", "t.json", "[3, 4]", "{root}/t.json", "record 1")
data_case("mt-csv-no-columns", "translation", "t.csv", "english,french\ncat,chat\n", "--source-lang/--target-lang")
data_case("mt-tsv-fields", "translation", "t.tsv", "en\tfr\ncat\tchat\textra\n", "{root}/t.tsv:2", "3 fields")
data_case("mt-parquet-truncated", "translation", "t.parquet", truncated_parquet({"en": ["cat"] * 40, "fr": ["chat"] * 40}),
          "{root}/t.parquet", "Parquet")
data_case("mt-empty-pairs", "translation", "t.jsonl", jsonl(*[{"en": "", "fr": " "}] * 4), "train split is empty")
data_case("mt-filter-empties", "translation", "t.jsonl", jsonl(*[{"en": "cat", "fr": "chat", "domain": "pets"}] * 6),
          "--filter", "no rows", extra=["--filter", "domain=cars"])
data_case("mt-min-words-empties", "translation", "t.jsonl", jsonl(*[{"en": "cat", "fr": "chat"}] * 6),
          "--min-words", "no rows", extra=["--min-words", "en=5"])
data_case("mt-filter-no-column", "translation", "t.jsonl", jsonl(*[{"en": "cat", "fr": "chat"}] * 4), "--filter", "nope",
          extra=["--filter", "nope=x"])
data_case("mt-filter-syntax", "translation", "t.jsonl", jsonl({"en": "cat", "fr": "chat"}), "--filter domain",
          extra=["--filter", "domain"])
data_case("mt-folder-no-train", "translation", "d", folder({"dev.jsonl": jsonl({"en": "a", "fr": "b"})}),
          "no train split")

# ---- train summarization -------------------------------------------------------------------------------
data_case("sum-no-text-column", "summarization", "s.jsonl", jsonl({"body": "x y z", "summary": "x"}), "--text-column")
data_case("sum-no-summary-column", "summarization", "s.jsonl", jsonl({"text": "x y z", "title": "x"}),
          "--summary-column")
data_case("sum-summary-list", "summarization", "s.jsonl", jsonl(*[{"text": "x y z", "summary": ["x"]}] * 3),
          "{root}/s.jsonl", "summary", "not text")
data_case("sum-text-number", "summarization", "s.jsonl", jsonl(*[{"text": 12, "summary": "x"}] * 3),
          "{root}/s.jsonl", "text", "not text")
data_case("sum-filter-empties", "summarization", "s.jsonl", jsonl(*[{"text": "a b c", "summary": "a", "lang": "en"}] * 5),
          "--filter", "no rows", extra=["--filter", "lang=de"])
data_case("sum-min-words-empties", "summarization", "s.jsonl", jsonl(*[{"text": "a b c", "summary": "a"}] * 5),
          "--min-words", "no rows", extra=["--min-words", "text=50"])
data_case("sum-min-words-not-number", "summarization", "s.jsonl", jsonl({"text": "a b c", "summary": "a"}),
          "--min-words text=many", extra=["--min-words", "text=many"])
data_case("sum-csv-fields", "summarization", "s.csv", "text,summary\na,b,c\n", "{root}/s.csv:2", "3 fields")
data_case("sum-parquet-garbage", "summarization", "s.parquet", b"PAR1PAR1", "{root}/s.parquet", "Parquet")
data_case("sum-jsonl-array-line", "summarization", "s.jsonl", jsonl({"text": "a", "summary": "b"}, "[]"),
          "{root}/s.jsonl:2", "JSON object")

# ---- train clm: code folders and tables -------------------------------------------------------------------
PY = "def add(a, b):\n    return a + b\n" * 20
data_case("clm-empty-folder", "clm", "code", folder({}), "no documents")
data_case("clm-only-binary", "clm", "code", folder({"a.py": b"\x00\x01\x02" * 50}), "no documents", "1 binary")
data_case("clm-only-latin1", "clm", "code", folder({"a.py": "# caf\xe9\n".encode("latin-1")}), "no documents",
          "undecodable")
data_case("clm-only-empty-files", "clm", "code", folder({"a.py": "", "b.py": "  \n"}), "no documents")
data_case("clm-glob-matches-nothing", "clm", "code", folder({"a.py": PY}), "--glob **/*.rs", extra=["--glob", "**/*.rs"])
data_case("clm-keywords-match-nothing", "clm", "code", folder({"a.py": PY}), "--filter-keywords",
          extra=["--filter-keywords", "pandas"])
data_case("clm-jsonl-no-field", "clm", "c.jsonl", jsonl({"code": PY}), "{root}/c.jsonl:1", "--text-column")
data_case("clm-jsonl-invalid", "clm", "c.jsonl", jsonl({"content": PY}, "{nope"), "{root}/c.jsonl:2", "invalid JSON")
data_case("clm-jsonl-array-line", "clm", "c.jsonl", jsonl({"content": PY}, "[1]"), "{root}/c.jsonl:2", "JSON object")
data_case("clm-jsonl-deep", "clm", "c.jsonl", jsonl('{"content": ' + DEEP + "}"), "{root}/c.jsonl:1")
data_case("clm-jsonl-content-number", "clm", "c.jsonl", jsonl({"content": 12345}), "{root}/c.jsonl:1", "not text")
data_case("clm-jsonl-latin1", "clm", "c.jsonl", '{"content": "caf\xe9"}\n'.encode("latin-1"), "{root}/c.jsonl:1",
          "not UTF-8")
data_case("clm-json-numbers", "clm", "c.json", "[1, 2, 3]", "{root}/c.json: record 1", "JSON object")
data_case("clm-json-invalid", "clm", "c.json", '[{"content": "x"}', "{root}/c.json", "invalid JSON")
data_case("clm-json-deep", "clm", "c.json", DEEP, "{root}/c.json")
data_case("clm-csv-no-column", "clm", "c.csv", "code\nx = 1\n", "{root}/c.csv", "--text-column")
data_case("clm-csv-latin1", "clm", "c.csv", "content\nx = 'caf\xe9'\n".encode("latin-1"), "{root}/c.csv", "not UTF-8")
data_case("clm-parquet-garbage", "clm", "c.parquet", b"garbage", "{root}/c.parquet", "Parquet")
data_case("clm-parquet-no-column", "clm", "c.parquet", parquet({"code": [PY]}), "{root}/c.parquet", "--text-column")
data_case("clm-txt-file", "clm", "c.txt", PY, "--data", "c.txt")
data_case("clm-files-too-short", "clm", "code", folder({f"{i}.py": "x = 1\n" for i in range(4)}), "--context-length",
          extra=["--validation-split", 0])
data_case("clm-streaming-no-max-steps", "clm", "code", folder({"a.py": PY}), "--max-steps",
          extra=["--streaming", "--max-steps", -1])

# ---- train qa: nested SQuAD JSON and flat tables ------------------------------------------------------------
def squad(paragraphs=None, data=None) -> str:
    if data is None:
        data = [{"title": "t", "paragraphs": paragraphs}]
    return json.dumps({"version": "1.1", "data": data}, ensure_ascii=False)


def para(qas, context=QA_CONTEXT) -> dict:
    return {"context": context, "qas": qas}


START = QA_CONTEXT.index("red fox")
GOOD_QA = {"id": "q1", "question": "What is the code?", "answers": [{"text": "red fox", "answer_start": START}]}
data_case("qa-squad-article-not-object", "qa", "s.json", squad(data=[{"paragraphs": []}, "oops"]), "{root}/s.json",
          "data[1]")
data_case("qa-squad-paragraphs-not-list", "qa", "s.json", squad(data=[{"title": "t", "paragraphs": "text"}]),
          "{root}/s.json", "data[0].paragraphs")
data_case("qa-squad-paragraph-no-context", "qa", "s.json", squad([{"qas": [GOOD_QA]}]), "{root}/s.json",
          "data[0].paragraphs[0]", "context")
data_case("qa-squad-context-number", "qa", "s.json", squad([para([GOOD_QA], context=7)]), "{root}/s.json",
          "data[0].paragraphs[0]", "context")
data_case("qa-squad-qas-strings", "qa", "s.json", squad([para(["What is the code?"])]), "{root}/s.json",
          "data[0].paragraphs[0].qas[0]")
data_case("qa-squad-qas-not-list", "qa", "s.json", squad([para({"question": "x"})]), "{root}/s.json",
          "data[0].paragraphs[0].qas")
data_case("qa-squad-no-question", "qa", "s.json", squad([para([{"id": "q", "answers": []}])]), "{root}/s.json",
          "qas[0]", "question")
data_case("qa-squad-question-number", "qa", "s.json", squad([para([{**GOOD_QA, "question": 42}])]), "{root}/s.json",
          "qas[0]", "question")
data_case("qa-squad-answers-strings", "qa", "s.json", squad([para([{**GOOD_QA, "answers": ["red fox"]}])]),
          "{root}/s.json", "qas[0].answers[0]")
data_case("qa-squad-answers-not-list", "qa", "s.json", squad([para([{**GOOD_QA, "answers": "red fox"}])]),
          "{root}/s.json", "qas[0].answers")
data_case("qa-squad-answer-start-string", "qa", "s.json",
          squad([para([{**GOOD_QA, "answers": [{"text": "red fox", "answer_start": "twenty"}]}])]),
          "{root}/s.json", "answers[0].answer_start")
data_case("qa-squad-answer-start-null", "qa", "s.json",
          squad([para([{**GOOD_QA, "answers": [{"text": "red fox", "answer_start": None}]}])]),
          "{root}/s.json", "answers[0].answer_start")
data_case("qa-squad-answer-no-text", "qa", "s.json", squad([para([{**GOOD_QA, "answers": [{"answer_start": START}]}])]),
          "{root}/s.json", "answers[0]", "text")
data_case("qa-squad-answer-text-number", "qa", "s.json",
          squad([para([{**GOOD_QA, "answers": [{"text": 5, "answer_start": START}]}])]), "{root}/s.json", "answers[0].text")
data_case("qa-squad-wrong-start", "qa", "s.json",
          squad([para([{**GOOD_QA, "id": f"q{i}", "answers": [{"text": "red fox", "answer_start": 3}]}]) for i in range(4)]),
          "answer_start",
          "--fix-answer-starts")
data_case("qa-squad-duplicate-ids", "qa", "s.json", squad([para([GOOD_QA, GOOD_QA, GOOD_QA, GOOD_QA])]),
          "duplicate question ids")
data_case("qa-squad-no-questions", "qa", "s.json", squad([para([])]), "{root}/s.json", "no questions")
data_case("qa-squad-invalid", "qa", "s.json", '{"data": [\n{"title": }]}', "{root}/s.json:2", "invalid JSON")
data_case("qa-squad-deep", "qa", "s.json", '{"data": ' + DEEP + "}", "{root}/s.json")
data_case("qa-squad-latin1", "qa", "s.json", squad([para([GOOD_QA], context="caf\xe9 red fox")]).encode("latin-1"),
          "{root}/s.json:1", "not UTF-8")
FLAT = {"id": "f1", "context": QA_CONTEXT, "question": "What is the code?",
        "answers": {"text": ["red fox"], "answer_start": [START]}}
data_case("qa-flat-answers-not-json", "qa", "f.jsonl", jsonl(*[{**FLAT, "id": f"f{i}", "answers": "red fox"}
                                                             for i in range(4)]), "answers is not JSON")
data_case("qa-flat-answers-mismatch", "qa", "f.jsonl",
          jsonl(*[{**FLAT, "id": f"f{i}", "answers": {"text": ["a", "b"], "answer_start": [1]}} for i in range(4)]),
          "2 texts but 1 answer_start")
data_case("qa-flat-answer-start-text", "qa", "f.jsonl",
          jsonl(*[{**FLAT, "id": f"f{i}", "answers": {"text": ["red fox"], "answer_start": ["x"]}} for i in range(4)]),
          "answer_start must be integers")
data_case("qa-flat-answers-list-of-strings", "qa", "f.jsonl",
          jsonl(*[{**FLAT, "id": f"f{i}", "answers": ["red fox"]} for i in range(4)]), "answers must be")
data_case("qa-flat-no-context", "qa", "f.jsonl", jsonl({"question": "q", "answers": {"text": [], "answer_start": []}}),
          "missing column context")
data_case("qa-flat-context-null", "qa", "f.jsonl", jsonl(*[{**FLAT, "id": f"f{i}", "context": None} for i in range(4)]),
          "context and question must be text")
data_case("qa-csv-answers-broken", "qa", "f.csv", "id,context,question,answers\n"
          + "".join(f'f{i},ctx,q,"{{""text"": [""c""]"\n' for i in range(4)), "answers is not JSON")
data_case("qa-parquet-garbage", "qa", "f.parquet", b"\x00PAR1", "{root}/f.parquet", "Parquet")
data_case("qa-json-numbers", "qa", "f.json", "[1, 2]", "{root}/f.json", "record 1")
data_case("qa-demo-mixed", "qa", "f.jsonl", jsonl(FLAT), "python-docs", extra=["--data", "python-docs"])

# ---- evaluate and predict: damaged model folders -------------------------------------------------------------
def edit_json(name: str, change: Callable[[dict], object]):
    """Damage `name` (a JSON file of the folder) by `change`, which edits the object in place."""
    def damage(folder: Path):
        path = folder / name
        obj = json.loads(path.read_text(encoding="utf-8"))
        change(obj)
        path.write_text(json.dumps(obj), encoding="utf-8")
    return damage


def write_file(name: str, content):
    def damage(folder: Path):
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    return damage


def truncate(name: str, keep: float = 0.5):
    def damage(folder: Path):
        path = folder / name
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def delete(*patterns: str):
    def damage(folder: Path):
        for pattern in patterns:
            for path in folder.glob(pattern):
                path.unlink()
    return damage


def set_config(**values):
    return edit_json("config.json", lambda c: c.update(values))


def set_run_config(**values):
    return edit_json("run.json", lambda r: r["config"].update(values))


PREDICT = {"ner": ["Peter lives in Paris"], "pos": ["Peter lives in Paris"], "mlm": ["This is a [MASK] ."],
           "qa": ["--question", "What is the code?", "--context", QA_CONTEXT],
           "translation": ["the cat is here"], "summarization": ["the cat is here and there"],
           "clm": ["def add(", "--max-new-tokens", 2]}


def model_case(name: str, command: str, task: str, damage, *expect: str, extra=()):
    """`nlpfit evaluate` or `predict` on a damaged copy of the tiny `task` model."""
    def setup(env: Env):
        folder = env.model(task, damage)
        if command == "evaluate":
            return ["evaluate", folder, "--split", "validation", *extra]
        return ["predict", folder, *PREDICT[task], *extra]
    case(name, *expect)(setup)


TASKS = ("ner", "mlm", "qa", "translation", "summarization", "clm")
for _task in TASKS:
    for _command in ("evaluate", "predict"):
        model_case(f"{_command}-{_task}-weights-truncated", _command, _task, truncate("model.safetensors"),
                   "model.safetensors", "truncated")
        model_case(f"{_command}-{_task}-config-invalid", _command, _task, write_file("config.json", '{"model_type": '),
                   "config.json", "invalid JSON")
        model_case(f"{_command}-{_task}-tokenizer-corrupt", _command, _task, write_file("tokenizer.json", "{not json"),
                   "tokenizer.json")
    model_case(f"predict-{_task}-run-json-invalid", "predict", _task, write_file("run.json", '{"task": '),
               "run.json", "invalid JSON")

model_case("evaluate-ner-weights-garbage", "evaluate", "ner", write_file("model.safetensors", b"\x07" * 300),
           "model.safetensors")
model_case("evaluate-ner-weights-header-only", "evaluate", "ner", truncate("model.safetensors", 0.0001),
           "model.safetensors")
model_case("evaluate-ner-weights-missing", "evaluate", "ner", delete("model.safetensors"), "no model weights")
model_case("predict-mlm-weights-missing", "predict", "mlm", delete("model.safetensors"), "no model weights")
model_case("evaluate-ner-config-list", "evaluate", "ner", write_file("config.json", "[1, 2]"), "config.json",
           "JSON object")
model_case("evaluate-ner-config-no-type", "evaluate", "ner", edit_json("config.json", lambda c: c.pop("model_type")),
           "config.json", "model_type")
model_case("evaluate-ner-config-unknown-type", "evaluate", "ner", set_config(model_type="no-such-model"),
           "config.json", "no-such-model")
model_case("evaluate-ner-config-impossible-heads", "evaluate", "ner", set_config(num_attention_heads=3),
           "config.json")
model_case("predict-clm-config-impossible-heads", "predict", "clm", set_config(n_head=3), "config.json")
model_case("evaluate-ner-config-vocab-string", "evaluate", "ner", set_config(vocab_size="big"), "config.json")
model_case("predict-ner-config-negative-layers", "predict", "ner", set_config(hidden_size=-4), "config.json")
model_case("predict-ner-labels-mismatch", "predict", "ner",
           set_config(id2label={"0": "O", "1": "B-X"}, label2id={"O": 0, "B-X": 1}), "config.json")
model_case("evaluate-ner-config-latin1", "evaluate", "ner", write_file("config.json", '{"x": "\xe9"}'.encode("latin-1")),
           "config.json", "not UTF-8")
model_case("predict-ner-tokenizer-vocab-only-config", "predict", "ner",
           delete("tokenizer.json", "vocab.txt", "special_tokens_map.json"), "no tokenizer files")
model_case("evaluate-ner-tokenizer-vocab-only-config", "evaluate", "ner",
           delete("tokenizer.json", "vocab.txt", "special_tokens_map.json"), "no tokenizer files")
model_case("predict-ner-no-tokenizer", "predict", "ner", delete("tokenizer*", "vocab.txt", "special_tokens_map.json"),
           "no tokenizer files")
model_case("predict-clm-no-tokenizer", "predict", "clm", delete("tokenizer*", "vocab.json", "merges.txt",
                                                                 "special_tokens_map.json"), "no tokenizer files")
model_case("predict-ner-tokenizer-truncated", "predict", "ner", truncate("tokenizer.json"), "tokenizer.json")
model_case("predict-mlm-tokenizer-config-invalid", "predict", "mlm", write_file("tokenizer_config.json", "{"),
           "tokenizer_config.json")
model_case("predict-translation-generation-config-invalid", "predict", "translation",
           write_file("generation_config.json", "{"), "generation_config.json")
model_case("evaluate-clm-generation-config-invalid", "evaluate", "clm", write_file("generation_config.json", "[]"),
           "generation_config.json")
model_case("predict-ner-vocab-smaller-than-weights", "predict", "ner", set_config(vocab_size=8), "config.json")

# run.json
model_case("evaluate-run-json-invalid", "evaluate", "ner", write_file("run.json", "{"), "run.json", "invalid JSON")
model_case("evaluate-run-json-list", "evaluate", "ner", write_file("run.json", "[]"), "run.json", "JSON object")
model_case("evaluate-run-json-latin1", "evaluate", "ner", write_file("run.json", '{"task": "n\xe9r"}'.encode("latin-1")),
           "run.json", "not UTF-8")
model_case("evaluate-run-json-no-config", "evaluate", "ner", edit_json("run.json", lambda r: r.pop("config")),
           "run.json", "config")
model_case("predict-run-json-config-number", "predict", "ner", edit_json("run.json", lambda r: r.update(config=5)),
           "run.json", "config")
model_case("evaluate-run-json-no-task", "evaluate", "mlm",
           edit_json("run.json", lambda r: (r.pop("task"), r["config"].pop("task"))), "run.json", "task")
model_case("predict-run-json-unknown-task", "predict", "ner", set_run_config(task="sentiment"), "run.json", "sentiment")
model_case("evaluate-run-json-batch-size-text", "evaluate", "ner", set_run_config(eval_batch_size="big"), "run.json",
           "eval_batch_size")
model_case("predict-run-json-batch-size-text", "predict", "translation", set_run_config(eval_batch_size=[64]),
           "run.json", "eval_batch_size")
model_case("evaluate-run-json-data-number", "evaluate", "qa", set_run_config(data=5), "run.json", "data")
model_case("evaluate-run-json-options-not-object", "evaluate", "ner", set_run_config(task_options="x"), "run.json",
           "task_options")
model_case("predict-run-json-option-type", "predict", "qa",
           edit_json("run.json", lambda r: r["config"]["task_options"].update(stride="wide")), "run.json", "stride")
model_case("evaluate-run-json-option-type", "evaluate", "clm",
           edit_json("run.json", lambda r: r["config"]["task_options"].update(context_length=None)), "run.json",
           "context_length")
model_case("predict-run-json-task-data-type", "predict", "qa", edit_json("run.json", lambda r: r.update(task_data=[])),
           "run.json", "task_data")
model_case("predict-run-json-empty", "predict", "clm", write_file("run.json", ""), "run.json")

# ---- evaluate and predict: bad data, inputs and folders ---------------------------------------------------------
def eval_data_case(name: str, task: str, filename: str, content, *expect: str, extra=()):
    def setup(env: Env):
        folder = env.model(task)
        return ["evaluate", folder, "--data", env.write(filename, content), *extra]
    case(name, *expect)(setup)


def predict_input_case(name: str, task: str, filename: str, content, *expect: str, extra=()):
    def setup(env: Env):
        folder = env.model(task)
        return ["predict", folder, "--input", env.write(filename, content), *extra]
    case(name, *expect)(setup)


case("evaluate-ner-labels-mismatch", "config.json", "classifier")(
    lambda env: ["evaluate", env.model("ner", set_config(id2label={"0": "O", "1": "B-X"}, label2id={"O": 0, "B-X": 1})),
                 "--data", env.write("o.conll", "nothing\tO\nhere\tO\n")])
eval_data_case("evaluate-ner-unknown-tags", "ner", "t.conll", "Tesla\tB-CAR\n", "B-CAR", "the model")
eval_data_case("evaluate-ner-ragged", "ner", "t.conll", "a O\nb O X\n", "{root}/t.conll:2")
eval_data_case("evaluate-ner-jsonl-tokens-int", "ner", "t.jsonl", jsonl({"tokens": 1, "ner_tags": ["O"]}),
               "{root}/t.jsonl:1", "tokens")
eval_data_case("evaluate-mlm-latin1", "mlm", "t.txt", "caf\xe9\n".encode("latin-1"), "{root}/t.txt:1", "not UTF-8")
eval_data_case("evaluate-qa-answers-strings", "qa", "s.json", squad([para([{**GOOD_QA, "answers": ["x"]}])]),
               "{root}/s.json", "answers[0]")
eval_data_case("evaluate-translation-no-columns", "translation", "t.jsonl", jsonl({"a": "b"}), "--translation-column")
eval_data_case("evaluate-clm-invalid", "clm", "c.jsonl", "{\n", "{root}/c.jsonl:1", "invalid JSON")
eval_data_case("evaluate-ner-split-missing", "ner", "d", folder({"train.conll": "Alice\tB-PER\n", "dev.conll": "Oslo\tB-LOC\n"}),
               "--split nope", extra=["--split", "nope"])
case("evaluate-missing-folder", "no such model folder")(lambda env: ["evaluate", env.root / "nope"])
case("evaluate-a-file", "{root}/f.txt")(lambda env: ["evaluate", env.write("f.txt", "x")])
case("evaluate-folder-without-run-json", "no run.json")(lambda env: ["evaluate", env.write("m", folder({"config.json": "{}"}))])
case("predict-missing-folder", "no such model folder")(lambda env: ["predict", "./nope", "text"])
case("evaluate-data-missing", "--data", "nope.conll")(
    lambda env: ["evaluate", env.model("ner"), "--data", env.root / "nope.conll"])

predict_input_case("predict-input-invalid-json", "ner", "in.jsonl", jsonl({"text": "a"}, "{bad"), "{root}/in.jsonl:2",
                   "invalid JSON")
predict_input_case("predict-input-array-line", "ner", "in.jsonl", jsonl({"text": "a"}, "[1]"), "{root}/in.jsonl:2",
                   "JSON object")
predict_input_case("predict-input-deep", "ner", "in.jsonl", jsonl('{"text": ' + DEEP + "}"), "{root}/in.jsonl:1")
predict_input_case("predict-input-latin1", "ner", "in.txt", "caf\xe9\n".encode("latin-1"), "{root}/in.txt:1",
                   "not UTF-8")
predict_input_case("predict-input-text-number", "ner", "in.jsonl", jsonl({"text": 5}), "input 1")
predict_input_case("predict-mlm-no-mask", "mlm", "in.txt", "no mask here\n", "input 1", "mask")
predict_input_case("predict-qa-no-context", "qa", "in.jsonl", jsonl({"question": "What?"}), "input 1", "context")
predict_input_case("predict-translation-object-without-text", "translation", "in.jsonl", jsonl({"de": "Katze"}),
                   "input 1")
case("predict-nothing-to-predict", "nothing to predict")(lambda env: ["predict", env.model("ner")])
case("predict-input-missing", "--input")(lambda env: ["predict", env.model("ner"), "--input", env.root / "nope.txt"])
case("predict-input-folder", "--input")(lambda env: ["predict", env.model("ner"), "--input", env.write("d", folder({}))])

# ---- tokenizer train ----------------------------------------------------------------------------------------
def tok_args(env: Env, *extra, data=None) -> list:
    if data is None:
        data = env.write("code", folder({f"m{i}.py": PY for i in range(3)}))
    return ["tokenizer", "train", "--data", data, "--vocab-size", 300, "--output", env.root / "TOK", *extra]


case("tok-output-is-a-file", "--output", "is a file")(lambda env: (env.write("TOK", "x"), tok_args(env))[1])
case("tok-output-is-a-file-overwrite", "--output", "is a file")(
    lambda env: (env.write("TOK", "x"), tok_args(env, "--overwrite"))[1])
case("tok-output-under-a-file", "--output", "{root}/f", "not a folder")(
    lambda env: (env.write("f", "x"), tok_args(env)[:-1] + [env.root / "f" / "TOK"])[1])
case("tok-output-not-empty", "--output", "--overwrite")(
    lambda env: (env.write("TOK/keep.txt", "x"), tok_args(env))[1])
case("tok-from-missing", "--from ./missing", "no such folder")(lambda env: tok_args(env, "--from", "./missing"))
case("tok-from-missing-under-folder", "--from", "no such folder")(
    lambda env: (env.write("toks/readme.txt", "x"), tok_args(env, "--from", "toks/missing"))[1])
case("tok-from-no-tokenizer", "--from", "no tokenizer files")(
    lambda env: tok_args(env, "--from", env.write("base", folder({"config.json": "{}"}))))
case("tok-from-corrupt", "{root}/base/tokenizer.json:1", "invalid JSON")(
    lambda env: tok_args(env, "--from", env.write("base", folder({"tokenizer.json": "{oops"}))))
case("tok-data-empty-folder", "no training documents")(lambda env: tok_args(env, data=env.write("e", folder({}))))
case("tok-data-jsonl-no-column", "{root}/c.jsonl:1", "--text-column")(
    lambda env: tok_args(env, data=env.write("c.jsonl", jsonl({"code": PY}))))
case("tok-data-jsonl-invalid", "{root}/c.jsonl:2", "invalid JSON")(
    lambda env: tok_args(env, data=env.write("c.jsonl", jsonl({"content": PY}, "{"))))
case("tok-data-txt", "--data", "c.txt")(lambda env: tok_args(env, data=env.write("c.txt", PY)))
case("tok-data-missing", "--data", "no such file or folder")(lambda env: tok_args(env, data="./nope"))
case("tok-data-parquet-garbage", "{root}/c.parquet", "Parquet")(
    lambda env: tok_args(env, data=env.write("c.parquet", b"nope")))
case("tok-data-csv-latin1", "{root}/c.csv", "not UTF-8")(
    lambda env: tok_args(env, data=env.write("c.csv", "content\ncaf\xe9\n".encode("latin-1"))))
case("tok-glob-nothing", "--glob")(lambda env: tok_args(env, "--glob", "*.rs"))

# ---- baseline lead3 ---------------------------------------------------------------------------------------------
def lead3_case(name: str, filename: str, content, *expect: str, extra=()):
    case(name, *expect)(lambda env: ["baseline", "lead3", "--data", env.write(filename, content), *extra])


SUMS = [{"text": f"First sentence {i}. Second one. Third one. Fourth.", "summary": f"first {i}"} for i in range(6)]
lead3_case("lead3-no-text-column", "s.jsonl", jsonl({"body": "a", "summary": "b"}), "--text-column")
lead3_case("lead3-no-summary-column", "s.jsonl", jsonl({"text": "a", "title": "b"}), "--summary-column")
lead3_case("lead3-split-missing", "s.jsonl", jsonl(*SUMS), "--split test", extra=["--split", "test"])
lead3_case("lead3-invalid-jsonl", "s.jsonl", jsonl(SUMS[0], "{"), "{root}/s.jsonl:2", "invalid JSON")
lead3_case("lead3-filter-empties", "s.jsonl", jsonl(*SUMS), "--filter", "no rows", extra=["--filter", "text=x"])
lead3_case("lead3-parquet-garbage", "s.parquet", b"garbage", "{root}/s.parquet", "Parquet")
lead3_case("lead3-summary-list", "s.jsonl", jsonl(*[{**r, "summary": [r["summary"]]} for r in SUMS]), "{root}/s.jsonl",
           "not text")
case("lead3-data-missing", "--data", "no such file")(lambda env: ["baseline", "lead3", "--data", "./nope.jsonl"])

# ---- train: paths ------------------------------------------------------------------------------------------------
def ner_train(env: Env, *extra, data=None, output=None) -> list:
    data = data or env.write("ner", folder({"train.conll": CONLL * 4}))
    args = train_args(env, "ner", data, *extra)
    if output is not None:
        args[args.index("--output") + 1] = output
    return args


def bert_copy(env: Env, damage) -> Path:
    folder = env.root / "bert"
    shutil.copytree(env.bert, folder)
    damage(folder)
    return folder


case("train-output-under-a-file", "--output", "{root}/f", "not a folder")(
    lambda env: ner_train(env, output=env.write("f", "x") / "OUT"))
case("train-output-is-a-file", "--output", "is a file")(lambda env: ner_train(env, output=env.write("OUT", "x")))
case("train-output-is-a-file-overwrite", "--output", "is a file")(
    lambda env: ner_train(env, "--overwrite", output=env.write("OUT", "x")))
case("train-output-dot", "--output .")(lambda env: ner_train(env, output="."))
case("train-output-not-empty", "--output", "--overwrite")(lambda env: ner_train(env, output=env.write("OUT/k", "x").parent))
case("train-output-is-the-data", "--output", "--data")(
    lambda env: ner_train(env, "--overwrite", data=env.write("d", folder({"train.conll": CONLL * 4})),
                          output=env.root / "d"))
case("train-model-dot-missing", "--model ./nope", "no such folder")(lambda env: ner_train(env) + ["--model", "./nope"])
case("train-model-missing-in-a-folder", "--model", "no such folder")(
    lambda env: (env.write("runs/readme", "x"), ner_train(env) + ["--model", "runs/missing"])[1])
case("train-model-missing-nested", "--model", "no such folder")(lambda env: ner_train(env) + ["--model", "a/b/c"])
case("train-model-is-a-file", "--model", "not a folder")(lambda env: ner_train(env) + ["--model", env.write("m.bin", "x")])
case("train-model-no-config", "--model", "config.json")(
    lambda env: ner_train(env) + ["--model", env.write("m", folder({"vocab.txt": "a"}))])
case("train-model-no-tokenizer", "--model", "no tokenizer files")(
    lambda env: ner_train(env) + ["--model", bert_copy(env, delete("tokenizer*", "vocab.txt", "special_tokens_map.json"))])
case("train-model-vocab-only-tokenizer-config", "--model", "no tokenizer files")(
    lambda env: ner_train(env) + ["--model", bert_copy(env, delete("tokenizer.json", "vocab.txt"))])
case("train-model-config-invalid", "{root}/bert/config.json:1", "invalid JSON")(
    lambda env: ner_train(env) + ["--model", bert_copy(env, write_file("config.json", "{"))])
case("train-model-weights-truncated", "{root}/bert/model.safetensors", "truncated")(
    lambda env: ner_train(env) + ["--model", bert_copy(env, truncate("model.safetensors"))])
case("train-model-tokenizer-corrupt", "{root}/bert/tokenizer.json", "JSON object")(
    lambda env: ner_train(env) + ["--model", bert_copy(env, write_file("tokenizer.json", "[]"))])
case("train-data-missing-file", "--data", "no such file")(lambda env: ner_train(env, data="./nope.conll"))
case("train-data-missing-in-a-folder", "--data", "no such file or folder")(
    lambda env: (env.write("corpora/readme", "x"), ner_train(env, data="corpora/missing"))[1])
case("train-clm-tokenizer-missing", "--tokenizer ./nope", "no such folder")(
    lambda env: train_args(env, "clm", env.write("code", folder({"a.py": PY})), "--tokenizer", "./nope"))
case("train-clm-tokenizer-no-files", "--tokenizer", "no tokenizer files")(
    lambda env: train_args(env, "clm", env.write("code", folder({"a.py": PY})), "--tokenizer",
                           env.write("tok", folder({"config.json": "{}"}))))
case("train-clm-config-missing", "--model-config ./nope.json")(
    lambda env: train_args(env, "clm", env.write("code", folder({"a.py": PY * 5})), "--model-config", "./nope.json"))
case("train-clm-config-invalid", "{root}/cfg/config.json:1", "invalid JSON")(
    lambda env: train_args(env, "clm", env.write("code", folder({"a.py": PY * 5})), "--model-config",
                           env.write("cfg", folder({"config.json": "{"}))))
case("train-mt-model-missing", "--model ./nope", "no such folder")(
    lambda env: train_args(env, "translation", env.write("t.jsonl", jsonl(*_mt_rows(10))), "--model", "./nope"))
case("train-qa-model-weights-garbage", "{root}/bert/model.safetensors", "not a safetensors file")(
    lambda env: train_args(env, "qa", env.write("f.jsonl", jsonl(*_qa_rows(6))))
    + ["--model", bert_copy(env, write_file("model.safetensors", b"\x01" * 64))])


# ---- what is not an error: empty inputs get empty answers ---------------------------------------------------
EMPTY_ANSWER = {"ner": {"text": "", "entities": []}, "translation": {"text": "", "translation_text": ""},
                "summarization": {"text": "", "summary_text": ""}, "clm": {"text": "", "completions": []}}


@pytest.mark.parametrize("task", TASKS)
def test_empty_inputs_get_empty_answers(task, trained, tmp_path, run_cli):
    """An empty --input file gives no rows; an empty text gets an empty answer (fill-mask and question
    answering need a mask, or a question and a context, and say so)."""
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    res = run_cli("predict", trained(task), "--input", empty)
    assert res.code == 0 and res.out == "" and "error" not in res.err, res.err[-2000:]
    res = run_cli("predict", trained(task), "")
    if task in EMPTY_ANSWER:
        assert res.code == 0, res.err[-2000:]
        assert [json.loads(line) for line in res.out.splitlines()] == [EMPTY_ANSWER[task]]
    else:
        assert res.code == 2 and res.err.splitlines()[-1].startswith("error: input 1")


# ---- the test -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(name, tmp_path, tiny_bert, trained, run_cli, monkeypatch):
    setup, expect = CASES[name]
    root = tmp_path / "case"
    root.mkdir()
    monkeypatch.chdir(root)
    env = Env(root, tiny_bert, trained)
    args = setup(env)
    before = snapshot(root)
    res = run_cli(*args)
    assert res.code == 2, f"exit {res.code}\n{res.err[-3000:]}"
    assert "Traceback" not in res.err, res.err[-3000:]
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.err[-3000:]
    assert res.err.rstrip("\n").splitlines()[-1] == errors[0], res.err[-3000:]  # the last line
    for fragment in expect:
        fragment = fragment.format(root=root)
        assert fragment in errors[0], (fragment, errors[0])
    after = snapshot(root)
    assert after == before, sorted(after ^ before)  # nothing made, nothing changed
    assert not any(".nlpfit-" in name for name, *_ in after)  # no hidden work folder
