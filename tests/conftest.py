"""Shared fixtures: tiny models built from configs, with tokenizers trained by `tokenizers`, and an
in-process runner for the command line.  No network: the hub is switched off for every test."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# prepared data (datasets' cache, nlpfit's Arrow cache under it) goes to a folder of this test session
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="nlpfit-tests-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], True)

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

PERSONS = ["Alice", "Bob", "Carol", "Dmitri", "Emma", "Farid", "Grace", "Hiro"]
PLACES = ["Paris", "London", "New York", "Berlin", "Tokyo", "Lagos", "Lima", "Oslo"]
ORGS = ["Google", "Hugging Face", "the United Nations", "Acme Corp", "Mozilla"]
TEMPLATES = [
    "{P} moved to {L} last year .",
    "{P} works for {O} in {L} .",
    "Yesterday {P} met {Q} at {O} .",
    "The office of {O} is in {L} .",
    "{P} and {Q} flew from {L} to {M} on Monday .",
    "nothing special happened today , said the weather report .",
]


def _tagged(words: str, tag: str) -> list[tuple[str, str]]:
    parts = words.split()
    return [(w, ("B-" if i == 0 else "I-") + tag) for i, w in enumerate(parts)]


def make_ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Sentences of (word, BIO tag) with PER / LOC / ORG entities."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        template = rng.choice(TEMPLATES)
        fill = {"P": ("PER", rng.choice(PERSONS)), "Q": ("PER", rng.choice(PERSONS)),
                "L": ("LOC", rng.choice(PLACES)), "M": ("LOC", rng.choice(PLACES)), "O": ("ORG", rng.choice(ORGS))}
        sent: list[tuple[str, str]] = []
        for piece in template.split():
            if piece.startswith("{"):
                tag, words = fill[piece[1]]
                sent += _tagged(words, tag)
            else:
                sent.append((piece, "O"))
        out.append(sent)
    return out


def write_conll(path: Path, sentences, columns: int = 2) -> Path:
    lines = ["-DOCSTART- -X- -X- O", ""] if columns == 4 else []
    for sent in sentences:
        for word, tag in sent:
            lines.append(f"{word} NN B-NP {tag}" if columns == 4 else f"{word}\t{tag}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def corpus_text() -> list[str]:
    """Real English prose shipped with CPython (pydoc topics), plus the NER fixture words."""
    from pydoc_data.topics import topics

    lines = [line for text in list(topics.values())[:40] for line in text.splitlines() if line.strip()]
    lines += [" ".join(w for w, _ in s) for s in make_ner_sentences(200)]
    return lines


def train_wordpiece(texts: list[str], vocab_size: int = 600, lowercase: bool = True):
    """A BERT-style WordPiece tokenizer trained by `tokenizers`, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", do_lower_case=lowercase, model_max_length=128)


def build_tiny_bert(folder: Path, texts: list[str] | None = None, vocab_size: int = 600) -> Path:
    """A 2-layer BERT encoder (random weights) with its WordPiece tokenizer, saved as a model folder."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = train_wordpiece(texts or corpus_text(), vocab_size)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """Run `nlpfit ARGS` in this process; return exit code, stdout and stderr."""
    from nlpfit.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@pytest.fixture
def ner_data(tmp_path) -> Path:
    """A folder with train/dev/test CoNLL files."""
    folder = tmp_path / "ner"
    folder.mkdir()
    write_conll(folder / "train.conll", make_ner_sentences(160, seed=1))
    write_conll(folder / "dev.conll", make_ner_sentences(40, seed=2))
    write_conll(folder / "test.conll", make_ner_sentences(40, seed=3))
    return folder


def torchrun_then_evaluate(args: list, out: Path, port: int) -> tuple[dict, dict]:
    """Train with `torchrun --nproc_per_node 2` on CPU (gloo), then evaluate the saved model in one
    process; return (the 2-process metrics.json, the 1-process validation metrics)."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "nlpfit", *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["num_processes"] == 2
    one = subprocess.run([sys.executable, "-m", "nlpfit", "evaluate", str(out), "--split", "validation", "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    return metrics, json.loads(one.stdout)


# ---- one tiny trained model folder per task kind ------------------------------------------------------
def _qa_rows(n: int, seed: int) -> list[dict]:
    """Contexts of filler sentences around "The code is X Y."; the question asks for it."""
    filler = "the value of each name is bound in the local namespace of the function".split()
    codes = ["red fox", "blue whale", "green tea", "black cat"]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sentences = [" ".join(rng.choice(filler) for _ in range(8)).capitalize() + "." for _ in range(3)]
        answer = rng.choice(codes)
        sentences.insert(rng.randrange(4), f"The code is {answer}.")
        context = " ".join(sentences)
        rows.append({"id": f"q{seed}-{i}", "context": context, "question": "What is the code?",
                     "answers": {"text": [answer], "answer_start": [context.find(answer, context.find("The code is"))]}})
    return rows


def _jsonl(path: Path, rows) -> Path:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


TINY_TASKS = ("ner", "mlm", "translation", "summarization", "clm", "qa")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_bert):
    """`tiny_models("qa")`: the folder of a tiny model of that task, trained a few steps once per session
    (data written here; the seq2seq and clm models are built from scratch)."""
    import sysconfig

    from nlpfit.cli import main

    root = tmp_path_factory.mktemp("tiny-models")
    made: dict[str, Path] = {}

    def data_for(task: str) -> list:
        folder = root / f"data-{task}"
        folder.mkdir()
        if task == "ner":
            write_conll(folder / "train.conll", make_ner_sentences(60, seed=1))
            write_conll(folder / "dev.conll", make_ner_sentences(12, seed=2))
            return ["--data", folder, "--model", tiny_bert]
        if task == "mlm":
            (folder / "train.txt").write_text("\n".join(corpus_text()[:300]), encoding="utf-8")
            return ["--data", folder / "train.txt", "--model", tiny_bert, "--chunk-size", 32]
        if task == "translation":
            words = [("red", "rouge"), ("cat", "chat"), ("dog", "chien"), ("house", "maison"), ("big", "grand")]
            rows = [{"translation": {"en": f"the {a} {b} is here .", "fr": f"le {fb} {fa} est ici ."}}
                    for a, fa in words for b, fb in words if a != b]
            _jsonl(folder / "train.jsonl", rows)
            return ["--data", folder / "train.jsonl", "--scratch-dim", 32, "--scratch-layers", 1, "--vocab-size", 120,
                    "--max-new-tokens", 6]
        if task == "summarization":
            rows = [{"text": f"{s} It was seen on day {i}. Nothing else happened.", "summary": s}
                    for i, s in enumerate(" ".join(w for w, _ in sent) for sent in make_ner_sentences(40, seed=3))]
            _jsonl(folder / "train.jsonl", rows)
            return ["--data", folder / "train.jsonl", "--scratch-dim", 32, "--scratch-layers", 1, "--vocab-size", 150,
                    "--max-new-tokens", 6]
        if task == "clm":
            stdlib = Path(sysconfig.get_paths()["stdlib"])
            for p in sorted((stdlib / "json").glob("*.py"))[:6]:
                (folder / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
            return ["--data", folder, "--filter-keywords", "", "--vocab-size", 300, "--n-layer", 1, "--n-embd", 32,
                    "--n-head", 2, "--context-length", 32, "--validation-split", 0.3]
        if task == "qa":
            _jsonl(folder / "train.jsonl", _qa_rows(40, 1))
            _jsonl(folder / "validation.jsonl", _qa_rows(8, 2))
            return ["--data", folder, "--model", tiny_bert, "--max-length", 64, "--stride", 24]
        raise KeyError(task)

    def get(task: str) -> Path:
        if task not in made:
            out = root / task
            args = ["train", task, *data_for(task), "--output", out, "--max-steps", 2, "--batch-size", 8,
                    "--eval-batch-size", 16]
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                assert not exc.code, f"training the tiny {task} model failed"
            made[task] = out
        return made[task]

    return get
