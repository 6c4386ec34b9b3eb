"""Causal LM pieces without training: code corpora (filter, bad files, tables), tokenizer training,
chunking and packing, the collator, the keytoken-weighted loss against a hand computation, and
streaming with bounded memory."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest

from nlpfit import NlpfitError

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_code(n: int = 40) -> list[str]:
    """Real Python source shipped with CPython."""
    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))
    texts = [p.read_text(encoding="utf-8") for p in files]
    return [t for t in texts if t.strip()][:n]


@pytest.fixture(scope="module")
def code_tokenizer():
    from nlpfit.tokenizer_training import train_bpe

    return train_bpe(stdlib_code(), vocab_size=400)


@pytest.fixture
def code_folder(tmp_path) -> Path:
    """Four kept .py files, one not mentioning a keyword, plus a binary, an undecodable and an empty file."""
    root = tmp_path / "code"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "a.py").write_text("import pandas as pd\ndf = pd.read_csv('x.csv')\nprint(df.head())\n")
    (root / "pkg" / "b.py").write_text("from sklearn.linear_model import LinearRegression\nm = LinearRegression()\n")
    (root / "pkg" / "sub" / "c.py").write_text("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\n")
    (root / "pkg" / "d.py").write_text("import seaborn as sns\nsns.set_theme()\n")
    (root / "plain.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "binary.py").write_bytes(b"import pandas\x00\x01\x02\xff" * 10)
    (root / "latin1.py").write_bytes("# pandas café\nx = 1\n".encode("latin-1"))
    (root / "empty.py").write_text("")
    (root / "notes.txt").write_text("pandas is not python source here")
    return root


# ---- corpora ---------------------------------------------------------------------------------------
def test_folder_glob_filter_and_skipped_files(code_folder):
    from nlpfit.data.code import DS_KEYWORDS, CodeCorpus

    corpus = CodeCorpus((str(code_folder),), keywords=DS_KEYWORDS, validation=0.0)
    docs = list(corpus.documents("train"))
    names = sorted(Path(d["path"]).name for d in docs)
    assert names == ["a.py", "b.py", "c.py", "d.py"]  # plain.py filtered, notes.txt not matched by the glob
    r = corpus.report
    assert (r.total, r.kept, r.binary, r.undecodable, r.empty) == (5, 4, 1, 1, 1)
    assert "4 kept" in r.summary(list(DS_KEYWORDS)) and "1 binary" in r.summary(list(DS_KEYWORDS))

    top_level = CodeCorpus((str(code_folder),), glob="*.py", validation=0.0)
    assert sorted(Path(d["path"]).name for d in top_level.documents("train")) == ["a.py", "plain.py"]


def test_routing_is_deterministic_and_partitions(tmp_path):
    from nlpfit.data.code import CodeCorpus

    for i in range(60):
        (tmp_path / f"f{i:02d}.py").write_text(f"x = {i}\n")
    corpus = CodeCorpus((str(tmp_path),), validation=0.2, test=0.1, seed=7)
    split_of = {d["path"]: d["split"] for d in corpus.documents(None)}
    again = {d["path"]: d["split"] for d in corpus.documents(None)}
    assert split_of == again and len(split_of) == 60
    counts = {s: sum(1 for v in split_of.values() if v == s) for s in ("train", "validation", "test")}
    assert all(counts.values()) and counts["train"] > counts["validation"]
    assert {d["path"] for d in corpus.documents("validation")} == {p for p, s in split_of.items() if s == "validation"}


def test_jsonl_and_parquet_with_text_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nlpfit.data.code import CodeCorpus

    rows = [{"repo_name": "r", "path": f"p{i}.py", "code": f"import pandas  # {i}\n"} for i in range(5)]
    jsonl = tmp_path / "code.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    parquet = tmp_path / "code.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (jsonl, parquet):
        corpus = CodeCorpus((str(path),), text_column="code", validation=0.0)
        assert [d["content"] for d in corpus.documents("train")] == [r["code"] for r in rows]
        with pytest.raises(NlpfitError, match="--text-column"):
            list(CodeCorpus((str(path),), text_column="content", validation=0.0).documents("train"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "x = 1"}\n{not json\n')
    with pytest.raises(NlpfitError, match=r"bad.jsonl:2"):
        list(CodeCorpus((str(bad),), validation=0.0).documents("train"))


# ---- tokenizer ---------------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_reload(code_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    code = "def plot_scatter(df):\n\tplt.scatter(df.x, df.y)  # naïve → ✓\n    return None\n"
    ids = code_tokenizer(code)["input_ids"]
    assert code_tokenizer.decode(ids) == code  # byte-level: nothing lost, whitespace included
    assert code_tokenizer.eos_token == "<|endoftext|>" and len(code_tokenizer) == 400
    code_tokenizer.save_pretrained(tmp_path / "tok")
    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again(code)["input_ids"] == ids and again.decode(ids) == code

    from nlpfit.tokenizer_training import train_bpe  # --from: keep the pipeline, learn a new vocabulary

    retrained = train_bpe(stdlib_code(10), vocab_size=300, base=again)
    assert len(retrained) == 300 and retrained.decode(retrained(code)["input_ids"]) == code


def test_tokenizer_train_command(code_folder, tmp_path, run_cli):
    for i in range(30):  # enough files for a hold-out
        (code_folder / f"gen{i}.py").write_text(f"import pandas as pd\nframe_{i} = pd.DataFrame({{'a': [{i}]}})\n")
    out = tmp_path / "tok"
    res = run_cli("tokenizer", "train", "--data", code_folder, "--vocab-size", 300, "--output", out,
                  "--filter-keywords", "pandas,sklearn,matplotlib,seaborn", "--min-frequency", 1)
    assert res.code == 0, res.err
    assert (out / "tokenizer.json").is_file() and "1 binary" in res.err and "1 undecodable" in res.err
    facts = json.loads((out / "nlpfit_tokenizer.json").read_text())
    assert facts["scan"]["kept"] == 34 and facts["vocab_size"] == 300
    rows = facts["tokens_per_file"]
    assert rows["new tokenizer"]["mean_tokens"] < rows["bytes (byte-level BPE before merges)"]["mean_tokens"]
    assert "new tokenizer" in res.out
    res = run_cli("tokenizer", "train", "--data", code_folder, "--output", out)
    assert res.code == 2 and "already exists" in res.err


# ---- features ---------------------------------------------------------------------------------------
def test_chunks_keep_full_blocks_and_count_the_dropped_remainder(code_tokenizer):
    from nlpfit.tasks.clm import chunk_batch

    texts = stdlib_code(6)
    ctx = 64
    out = chunk_batch({"content": texts}, code_tokenizer, ctx)
    n_tokens = [len(code_tokenizer(t)["input_ids"]) for t in texts]
    assert sum(out["length"]) == sum(n_tokens)  # overflowing blocks cover every token once
    full = [ids for ids, n in zip(out["input_ids"], out["length"]) if n == ctx]
    assert len(full) == sum(n // ctx for n in n_tokens)
    assert all(len(ids) == ctx for ids in full)
    dropped = sum(n for n in out["length"] if n != ctx)
    assert dropped == sum(n % ctx for n in n_tokens) and dropped > 0
    # blocks are consecutive pieces of each file
    first = code_tokenizer(texts[0])["input_ids"]
    assert out["input_ids"][0] == first[:ctx] and out["input_ids"][1] == first[ctx:2 * ctx]


def test_packing_loses_nothing(code_tokenizer):
    from nlpfit.tasks.clm import pack_texts

    texts = stdlib_code(5)
    ctx = 50
    blocks = [b["input_ids"] for b in pack_texts(texts, code_tokenizer, ctx, batch_size=2)]
    eos = code_tokenizer.eos_token_id
    expected = [i for t in texts for i in code_tokenizer(t)["input_ids"] + [eos]]
    assert [i for b in blocks for i in b] == expected
    assert all(len(b) == ctx for b in blocks[:-1]) and 0 < len(blocks[-1]) <= ctx
    assert sum(1 for i in expected if i == eos) == len(texts)


def test_collator_keeps_eos_labels_and_masks_padding(code_tokenizer):
    import copy

    from nlpfit.tasks.clm import causal_lm_collator

    tok = copy.deepcopy(code_tokenizer)
    tok.pad_token = tok.eos_token  # GPT-2's convention
    eos = tok.eos_token_id
    batch = causal_lm_collator(tok)([{"input_ids": [5, 6, eos, 7]}, {"input_ids": [8, eos]}])
    assert batch["labels"].tolist() == [[5, 6, eos, 7], [8, eos, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


# ---- the model built from a config -------------------------------------------------------------------
def test_gpt2s_gelu_in_one_kernel_is_the_same_model():
    import copy

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from nlpfit.tasks.clm import one_kernel_gelu

    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(config).eval()
    fast_config = copy.deepcopy(config)
    one_kernel_gelu(fast_config)
    assert fast_config.activation_function == "gelu_pytorch_tanh" and config.activation_function == "gelu_new"
    fast = GPT2LMHeadModel(fast_config).eval()
    fast.load_state_dict(reference.state_dict())
    ids = torch.randint(0, 40, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = torch.linspace(-6, 6, 1001)
        assert not torch.equal(reference.transformer.h[0].mlp.act(x), x)  # a real activation, compared below
        torch.testing.assert_close(fast.transformer.h[0].mlp.act(x), reference.transformer.h[0].mlp.act(x),
                                   atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fast(ids).logits, reference(ids).logits, atol=1e-5, rtol=1e-5)
    relu = GPT2Config(activation_function="relu")
    one_kernel_gelu(relu)  # any other activation is kept
    assert relu.activation_function == "relu"


# ---- the keytoken-weighted loss ------------------------------------------------------------------------
def tiny_gpt2(vocab: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()


def test_weighted_loss_matches_a_hand_computation():
    import torch

    from nlpfit.tasks.clm import keytoken_weighted_loss

    model = tiny_gpt2(20)
    input_ids = torch.tensor([[3, 7, 7, 2, 9, 1], [4, 5, 6, 7, 8, 9], [7, 3, 3, 3, 0, 0]])
    attention_mask = torch.tensor([[1] * 6, [1] * 6, [1, 1, 1, 1, 0, 0]])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    keytokens, alpha = [7, 9], 0.5
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        plain = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        got = keytoken_weighted_loss(logits, labels, input_ids, keytokens, alpha, attention_mask)
        got0 = keytoken_weighted_loss(logits, labels, input_ids, keytokens, 0.0, attention_mask)

    # by hand: every next-token log-probability, sample weights 1 + alpha * (keyword tokens in the inputs)
    num = den = 0.0
    for b in range(3):
        logp = torch.log_softmax(logits[b].double(), dim=-1)
        terms = [-logp[t, labels[b, t + 1]].item() for t in range(5) if labels[b, t + 1] != -100]
        k = sum(1 for t in range(6) if attention_mask[b, t] and input_ids[b, t].item() in keytokens)
        w = 1 + alpha * k
        num += w * sum(terms)
        den += w * len(terms)
    assert got.item() == pytest.approx(num / den, rel=1e-5)
    assert got0.item() == pytest.approx(plain.item(), rel=1e-5)  # alpha 0: the plain loss
    assert got.item() != pytest.approx(plain.item(), rel=1e-4)


def test_keyword_token_ids(code_tokenizer):
    from nlpfit.tasks.clm import keyword_token_ids

    ids = keyword_token_ids(code_tokenizer, ["(", "self"])
    assert code_tokenizer.convert_tokens_to_ids("(") in ids
    with pytest.raises(NlpfitError, match="single token"):
        keyword_token_ids(code_tokenizer, ["a_very_unlikely_identifier_xyz"])


# ---- streaming --------------------------------------------------------------------------------------
STREAM_PROBE = r"""
import json, sys, tracemalloc
from nlpfit.config import RunConfig
from nlpfit.tasks import make_task
from nlpfit.tokenizer_training import train_bpe
folder = sys.argv[1]
tok = train_bpe(["import pandas as pd\ndef f(x):\n    return x * 2\n"] * 50, vocab_size=300, min_frequency=1)
tok.pad_token = tok.eos_token
cfg = RunConfig(data=[folder], max_steps=1, validation_split=0.0, task="clm",
                task_options={"streaming": True, "filter_keywords": "", "context_length": 64, "shuffle_buffer": 200})
task = make_task(cfg)  # the task's own streaming path: corpus -> IterableDataset -> blocks -> shuffle buffer
raw, facts = task.load_data()
blocks = task.preprocess(raw, tok, None, facts, training=True)[0]["train"]
tracemalloc.start()
it = iter(blocks)
n = sum(1 for _, _ in zip(range(300), it))  # warm up: lazy imports, first batches, the shuffle buffer
tracemalloc.reset_peak()
base = tracemalloc.get_traced_memory()[0]
n += sum(1 for _ in it)
peak = tracemalloc.get_traced_memory()[1] - base
print(json.dumps({"blocks": n, "peak": peak, "files": len(list(task.corpus().documents("train")))}))
"""


def test_streaming_memory_stays_flat(tmp_path):
    """Iterating 4x more files must not take 4x more memory: nothing is materialised."""
    import os
    import subprocess
    import sys

    body = "".join(f"def function_{i}(frame):\n    return frame.groupby('k{i}').sum()  # pandas\n" for i in range(20))
    results = {}
    for n_files in (256, 1024):
        folder = tmp_path / f"c{n_files}"
        folder.mkdir()
        for i in range(n_files):
            (folder / f"m{i:04d}.py").write_text(f"# module {i}\n" + body)
        size = n_files * len(body)
        proc = subprocess.run([sys.executable, "-c", STREAM_PROBE, str(folder)], capture_output=True,
                              text=True, env={**os.environ, "HF_DATASETS_OFFLINE": "1"}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[n_files] = (json.loads(proc.stdout.strip().splitlines()[-1]), size)
    (small, _), (big, _) = results[256], results[1024]
    assert small["files"] == 256 and big["files"] == 1024
    assert big["blocks"] > 3.5 * small["blocks"]
    assert big["peak"] < 1.1 * small["peak"] + 256 * 1024, (small, big)  # flat: one map batch + the buffer
    assert big["peak"] < big["blocks"] * 64 * 8 / 2  # less than half what the blocks alone would take


def test_streaming_needs_max_steps(code_folder, tmp_path, run_cli):
    res = run_cli("train", "clm", "--data", code_folder, "--streaming", "--output", tmp_path / "o")
    assert res.code == 2 and "--max-steps" in res.err


# ---- bad input ----------------------------------------------------------------------------------------
def test_empty_folder_and_no_kept_files(tmp_path, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("train", "clm", "--data", empty, "--output", tmp_path / "o")
    assert res.code == 2 and "no documents" in res.err and "Traceback" not in res.err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.py").write_bytes(b"\x00\x01binary")
    (only_bad / "y.py").write_bytes(b"caf\xe9 = 1\n")
    res = run_cli("train", "clm", "--data", only_bad, "--output", tmp_path / "o")
    assert res.code == 2 and "1 binary" in res.err and "1 undecodable" in res.err
    res = run_cli("train", "clm", "--data", tmp_path / "missing", "--output", tmp_path / "o")
    assert res.code == 2 and "no such file or folder" in res.err
    res = run_cli("train", "clm", "--data", "someone/codeparrot-ds-offline", "--output", tmp_path / "o")
    assert res.code == 2 and "cannot load this hub dataset" in res.err
    notes = tmp_path / "notes.txt"
    notes.write_text("not a table")
    res = run_cli("train", "clm", "--data", notes, "--output", tmp_path / "o")
    assert res.code == 2 and "expected a folder of source files" in res.err
