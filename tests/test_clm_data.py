"""The causal-LM data path on files: documents and blocks written as Arrow, the same blocks with one
or several processes (--num-proc), and the prepared-data cache reused by an identical second run but
never when the files, the tokenizer or a block option changed."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def tokenizers():
    from nlpfit.tokenizer_training import train_bpe

    texts = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]
    return train_bpe(texts, vocab_size=400), train_bpe(texts, vocab_size=500)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Real stdlib modules (email, json), one of them too short for a block."""
    root = tmp_path / "corpus"
    for sub in ("email", "json"):
        (root / sub).mkdir(parents=True)
        for f in sorted((STDLIB / sub).glob("*.py"))[:12]:
            (root / sub / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (root / "tiny.py").write_text("x = 1\n")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def prepare(folder, tokenizer, **options):
    """What `nlpfit train clm --data FOLDER` does to the data: load_data, then preprocess."""
    from nlpfit.config import RunConfig
    from nlpfit.tasks import make_task

    opts = {"filter_keywords": "", "context_length": 64, **options}
    task = make_task(RunConfig(data=[str(folder)], validation_split=0.2, task="clm", task_options=opts))
    raw, facts = task.load_data()
    features, facts = task.preprocess(raw, tokenizer, None, facts, training=True)
    return raw, {split: ds[:]["input_ids"] for split, ds in features.items()}, facts


def course_blocks(texts, tokenizer, ctx):
    """The course's tokenize(): full blocks of each file, in order."""
    out = tokenizer(texts, truncation=True, max_length=ctx, return_overflowing_tokens=True, return_length=True)
    return [ids for ids, n in zip(out["input_ids"], out["length"]) if n == ctx]


@pytest.mark.parametrize("pack", [False, True])
def test_same_blocks_with_one_and_two_processes(corpus, tokenizers, cache, pack):
    from nlpfit.tasks.clm import pack_texts

    tok = tokenizers[0]
    raw, one, facts1 = prepare(corpus, tok, pack=pack, num_proc=1, data_cache=False)
    _, two, facts2 = prepare(corpus, tok, pack=pack, num_proc=2, data_cache=False)
    assert one == two and facts1.blocks == facts2.blocks
    for split, blocks in one.items():
        texts = raw[split][:]["content"]
        if pack:  # the files joined with eos separators, cut in order, the last block shorter
            assert blocks == [b["input_ids"] for b in pack_texts(texts, tok, 64)]
            assert facts1.blocks[split]["dropped"] == 0
        else:  # the course's blocks, and the tokens left out counted
            assert blocks == course_blocks(texts, tok, 64)
            n_tokens = sum(len(ids) for ids in tok(texts)["input_ids"])
            assert facts1.blocks[split]["tokens"] == n_tokens
            assert facts1.blocks[split]["dropped"] == n_tokens - 64 * len(blocks) > 0
    assert not cache.exists()  # --no-data-cache writes nothing there


def test_a_batch_without_a_full_block_is_counted_and_left_out(tokenizers, tmp_path, monkeypatch):
    import datasets

    from nlpfit.tasks import clm
    from nlpfit.tasks.clm import make_blocks

    monkeypatch.setattr(clm, "MAP_BATCH", 2)  # the first two batches hold only one-line files

    tok = tokenizers[0]
    texts = ["x = 1\n"] * 5 + [(STDLIB / "json" / "decoder.py").read_text(encoding="utf-8")]
    ds = datasets.Dataset.from_dict({"content": texts, "path": [str(i) for i in range(6)]})
    feats, stats = make_blocks(ds, tok, 64, False, 0, tmp_path, "t")
    assert feats[:]["input_ids"] == course_blocks(texts, tok, 64) and feats.column_names == ["input_ids"]
    n_tokens = sum(len(ids) for ids in tok(texts)["input_ids"])
    assert stats == {"blocks": len(feats), "tokens": n_tokens, "dropped": n_tokens - 64 * len(feats)}


def test_second_run_reuses_the_cache(corpus, tokenizers, cache, capfd, monkeypatch):
    from nlpfit.tasks import clm

    tok = tokenizers[0]
    _, first, facts1 = prepare(corpus, tok, num_proc=2)
    err = capfd.readouterr().err
    assert "reusing" not in err
    assert (cache / "nlpfit" / "clm-documents").is_dir() and (cache / "nlpfit" / "clm-blocks").is_dir()

    def must_not_run(*args, **kwargs):
        raise AssertionError("the blocks were made again")

    monkeypatch.setattr(clm, "make_blocks", must_not_run)
    _, second, facts2 = prepare(corpus, tok, num_proc=1)  # another worker count: the same blocks
    err = capfd.readouterr().err
    assert "data: reusing the documents prepared by an earlier run" in err
    assert "train: reusing the blocks prepared by an earlier run" in err
    assert second == first and facts2.blocks == facts1.blocks and facts2.scan == facts1.scan
    assert not list((cache / "nlpfit" / "clm-blocks").glob(".staging-*"))


@pytest.mark.parametrize("change", ["file edited", "file added", "tokenizer", "context length", "pack", "keywords",
                                    "hold-out", "fewer samples"])
def test_cache_not_reused_when_anything_changed(corpus, tokenizers, cache, capfd, change):
    tok = tokenizers[0]
    prepare(corpus, tok)
    capfd.readouterr()
    options = {}
    if change == "file edited":
        target = next((corpus / "json").glob("*.py"))
        target.write_text(target.read_text() + "\n# edited\nVALUE = 42\n")
    elif change == "file added":
        (corpus / "json" / "extra.py").write_text((STDLIB / "json" / "decoder.py").read_text())
    elif change == "tokenizer":
        tok = tokenizers[1]
    elif change == "context length":
        options["context_length"] = 48
    elif change == "pack":
        options["pack"] = True
    elif change == "keywords":
        options["filter_keywords"] = "import"
    if change == "hold-out":
        from nlpfit.config import RunConfig
        from nlpfit.tasks import make_task

        task = make_task(RunConfig(data=[str(corpus)], validation_split=0.3, task="clm",
                                   task_options={"filter_keywords": "", "context_length": 64}))
        raw, facts = task.load_data()
        got = {s: d[:]["input_ids"] for s, d in task.preprocess(raw, tok, None, facts, training=True)[0].items()}
    elif change == "fewer samples":
        from nlpfit.config import RunConfig
        from nlpfit.run import limit_samples
        from nlpfit.tasks import make_task

        cfg = RunConfig(data=[str(corpus)], validation_split=0.2, task="clm", max_train_samples=5,
                        task_options={"filter_keywords": "", "context_length": 64})
        task = make_task(cfg)
        raw, facts = task.load_data()
        raw = limit_samples(raw, cfg)
        got = {s: d[:]["input_ids"] for s, d in task.preprocess(raw, tok, None, facts, training=True)[0].items()}
    else:
        raw, got, _ = prepare(corpus, tok, **options)
    err = capfd.readouterr().err
    assert "train: reusing the blocks" not in err
    if change in ("tokenizer", "context length", "pack", "fewer samples"):
        assert "data: reusing the documents" in err  # the documents are the same: only the blocks are new
    else:
        assert "data: reusing the documents" not in err
    # what a run without any cache makes of the same data and options
    if change == "fewer samples":
        assert len(raw["train"]) == 5
    ctx = options.get("context_length", 64)
    for split, blocks in got.items():
        texts = raw[split][:]["content"]
        if options.get("pack"):
            from nlpfit.tasks.clm import pack_texts

            assert blocks == [b["input_ids"] for b in pack_texts(texts, tok, ctx)]
        else:
            assert blocks == course_blocks(texts, tok, ctx)
    if change == "keywords":
        assert all("import" in t for t in raw["train"][:]["content"])


def test_cache_root_follows_hf_datasets_cache(tmp_path, monkeypatch):
    from nlpfit.data.code import cache_root

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere" / "nlpfit"


@pytest.mark.parametrize("value, words", [("-1", ">= 0"), ("1000", "<= 256"), ("two", "two")])
def test_bad_num_proc_is_one_line(corpus, tmp_path, run_cli, value, words):
    res = run_cli("train", "clm", "--data", corpus, "--num-proc", value, "--output", tmp_path / "o")
    assert res.code == 2, res.err
    lines = [line for line in res.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--num-proc" in lines[0], res.err


def test_a_damaged_cache_entry_is_prepared_again(tmp_path, monkeypatch):
    """An Arrow file of the cache damaged on disk: a warning, the entry removed, the data prepared anew."""
    import datasets

    from nlpfit.data.code import PreparedCache

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    entry = PreparedCache("clm-blocks", "k")
    staging = entry.staging()
    datasets.Dataset.from_dict({"input_ids": [[1, 2], [3, 4]]}).save_to_disk(str(tmp_path / "ds"))
    arrow = next((tmp_path / "ds").glob("*.arrow"))
    (staging / "train-blocks.arrow").write_bytes(arrow.read_bytes())
    entry.commit(staging, {"files": ["train-blocks.arrow"]})
    files = lambda manifest: manifest["files"]  # noqa: E731
    manifest, tables = entry.load(files)
    assert manifest == {"files": ["train-blocks.arrow"]} and tables["train-blocks.arrow"]["input_ids"] == [[1, 2], [3, 4]]
    (entry.folder / "train-blocks.arrow").write_bytes(b"\x00garbage" * 10)
    assert entry.load(files) is None and not entry.folder.exists()
    staging = entry.staging()  # a manifest naming a file that is not there: prepared again as well
    entry.commit(staging, {"files": ["train-blocks.arrow"]})
    assert entry.load(files) is None and not entry.folder.exists()


def test_what_a_killed_run_was_preparing_is_removed_by_the_next(tmp_path, monkeypatch):
    """A run killed mid-preparation leaves its staging folder; the next preparation on the host removes it,
    and leaves alone the folder of a writer still running."""
    import subprocess
    import sys

    from nlpfit.data.code import PreparedCache

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    killed = PreparedCache("clm-blocks", "k").staging()
    killed = killed.rename(killed.with_name(killed.name.rsplit("@", 1)[0] + f"@{ended.pid}"))
    (killed / "train-blocks.arrow").write_bytes(b"half written")
    running = PreparedCache("clm-blocks", "k").staging()  # this process: still writing
    new = PreparedCache("clm-blocks", "other").staging()
    assert not killed.exists() and running.exists() and new.exists()
