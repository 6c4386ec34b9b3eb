"""Causal LM data preparation at codeparrot's scale: tokenize and cut a code corpus into blocks.

The corpus is the Python source installed here (CPython's standard library and site-packages),
kept by codeparrot-clean's filters (no minified or generated files) and written as codeparrot-ds is
(a JSON Lines file with repo_name, path, content): a quarter of the size in distinct files, repeated
until the size is reached: NLPFIT_BENCH_CLM_MB (default 64 MB, what six passes fit in about 10 minutes on
two cores at ~1 MB/s; --quick 16 MB).  The full run then prepares a corpus of codeparrot's scale once
with nlpfit (NLPFIT_BENCH_CLM_BIG_MB, default 1024 MB; 0 skips it), the same files repeated: its MB/s
and memory, and the second run that finds it in the cache.  The tokenizer is a
byte-level BPE trained once with nlpfit's tokenizer training (16k tokens), the same for both sides.

The plain recipe is the course's: `raw_datasets = load_dataset("json", data_files=...)`, its
`tokenize(element)` (truncation, max_length=context_length, return_overflowing_tokens,
return_length, keeping the blocks of exactly context_length tokens) and
`raw_datasets.map(tokenize, batched=True, remove_columns=...)`, in process and with num_proc.
nlpfit's side is what `nlpfit train clm --data FILE --tokenizer TOK` does to prepare features
(CausalLM.load_data + preprocess), with --num-proc 0 and N, then the same run again, which finds
its blocks in the prepared-data cache.  Each measurement runs in a fresh child process with its own
empty HF_DATASETS_CACHE (the second run shares the first's), so that its peak RSS is its own.

Rate: MB/s of source text (the UTF-8 bytes of the content column) from reading the file to the
last block written.  Quality: blocks made and the sum of their token ids, which must equal the
course's (nlpfit also routes 5% of the files to validation: the blocks are the same, in two splits).
Memory: the peak of the anonymous resident memory (RssAnon: what the process allocates itself, not the
pages of the files it maps, which the kernel drops and reads again as it likes), of the process alone
and with its worker processes summed (pages a worker shares with its parent after fork count in both),
sampled every 20 ms until the last block is written (`AnonymousPeak`).  nlpfit's at a quarter of the size
(every distinct file once) beside the full size's (each four times), and at 1 GB, shows whether memory
grows with the corpus: the same files in every corpus, so that the largest file, whose batch is the
peak of a run, is in all of them.
Departures from the course: the corpus is local (no download is possible), and its files repeat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
CONTEXT_LENGTH = 128
VOCAB = 16000


# ---- the corpus ---------------------------------------------------------------------------------
def codeparrot_clean(text: str) -> bool:
    """codeparrot-clean's filters: no line over 1000 characters, mean line length at most 100, at
    least 25% alphanumeric characters (what drops minified and generated data files)."""
    lines = text.splitlines() or [""]
    if max(map(len, lines)) > 1000 or len(text) / len(lines) > 100:
        return False
    return sum(c.isalnum() for c in text) >= 0.25 * len(text)


def source_files(limit_bytes: int) -> list[tuple[str, str]]:
    """(relative path, text) of installed Python files, up to `limit_bytes` of text."""
    from nlpfit.data.code import ScanReport, default_sources, read_source, walk_files

    out, total, report = [], 0, ScanReport()
    for root in default_sources():
        for f in walk_files(Path(root), "**/*.py"):
            text = read_source(f, report)
            if text is None or not codeparrot_clean(text):
                continue
            out.append((f.relative_to(root).as_posix(), text))
            total += len(text.encode("utf-8"))
            if total >= limit_bytes:
                return out
    return out


def write_corpus(path: Path, size_mb: int, files: list[tuple[str, str]]) -> dict:
    """codeparrot-ds-style JSON Lines: the files repeated until `size_mb` MB of content."""
    target, total, n = size_mb * 2**20, 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while total < target:
            rel, text = files[n % len(files)]
            rep = n // len(files)
            fh.write(json.dumps({"repo_name": f"local/copy{rep}", "path": rel, "content": text,
                                 "license": "local"}) + "\n")
            total += len(text.encode("utf-8"))
            n += 1
    return {"files": n, "content_bytes": total}


# ---- one measurement, in a child process --------------------------------------------------------
def _token_sum(datasets_) -> tuple[int, int]:
    import pyarrow.compute as pc

    blocks, tokens = 0, 0
    for ds in datasets_:
        col = ds.data.column("input_ids")
        blocks += len(ds)
        tokens += int(pc.sum(pc.list_flatten(col)).as_py() or 0)
    return blocks, tokens


class AnonymousPeak:
    """The peak anonymous resident memory of this process (`own`) and of it with its worker processes
    summed (`tree`), in MB, sampled every `interval` seconds in a thread from creation until `stop()`."""

    def __init__(self, interval: float = 0.02):
        import threading

        self.own = self.tree = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        import psutil

        from nlpfit.allocator import rss_anon

        me = psutil.Process()
        while True:
            own = rss_anon() / 2**20
            workers = sum(rss_anon(c.pid) for c in me.children(recursive=True)) / 2**20
            self.own, self.tree = max(self.own, own), max(self.tree, own + workers)
            if self._done.wait(interval):
                return

    def stop(self) -> "AnonymousPeak":
        self._done.set()
        self._thread.join()
        return self


def child(job: dict) -> dict:
    from transformers import AutoTokenizer

    context_length = CONTEXT_LENGTH
    memory = AnonymousPeak()
    start = time.perf_counter()
    stages = {}
    if job["recipe"] == "course":
        from datasets import load_dataset

        tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
        raw_datasets = load_dataset("json", data_files={"train": job["data"]})
        stages["load_dataset"] = time.perf_counter() - start

        from recipes.clm import course_tokenize

        tokenize = course_tokenize(tokenizer, context_length)
        tokenized_datasets = raw_datasets.map(tokenize, batched=True, remove_columns=raw_datasets["train"].column_names,
                                              num_proc=job["num_proc"] or None)
        parts = list(tokenized_datasets.values())
    else:
        from nlpfit.config import RunConfig
        from nlpfit.tasks import make_task

        cfg = RunConfig(data=[job["data"]], task="clm", validation_split=0.05,
                        task_options={"tokenizer": job["tokenizer"], "filter_keywords": "",
                                      "context_length": context_length, "num_proc": job["num_proc"]})
        task = make_task(cfg)
        raw, facts = task.load_data()
        stages["load_data"] = time.perf_counter() - start
        tokenizer = task._load_tokenizer(job["tokenizer"])
        task._prepare_tokenizer(tokenizer)
        features, facts = task.preprocess(raw, tokenizer, None, facts, training=True)
        parts = list(features.values())
    seconds = time.perf_counter() - start
    memory.stop()
    if stages:
        stages["tokenize+chunk"] = seconds - sum(stages.values())
    blocks, token_sum = _token_sum(parts)  # the check reads every block: after the memory is measured
    return {"seconds": seconds, "blocks": blocks, "token_sum": token_sum, "stages": stages,
            "anon_mb": memory.own, "tree_anon_mb": memory.tree}


def run_child(job: dict, cache: Path) -> dict:
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(HERE), json.dumps(job)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"clm data child {job} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["log"] = proc.stderr
    return result


# ---- the section --------------------------------------------------------------------------------
def env_mb(name: str, default: int, least: int) -> int:
    """A corpus size in MB from the environment; a value that is not a whole number of at least `least`
    ends the bench with one line (exit 2)."""
    value = os.environ.get(name, str(default))
    if not value.strip().isdigit() or int(value) < least:
        print(f"bench: {name}={value!r}: a whole number of MB, at least {least}", file=sys.stderr)
        raise SystemExit(2)
    return int(value)


def setup(quick: bool, tmp: Path) -> dict:
    from nlpfit.tokenizer_training import train_bpe

    tmp.mkdir(parents=True, exist_ok=True)
    size = 16 if quick else env_mb("NLPFIT_BENCH_CLM_MB", 64, least=1)
    big = 0 if quick else env_mb("NLPFIT_BENCH_CLM_BIG_MB", 1024, least=0)
    files = source_files(max(min(size, 64) // 4, 1) * 2**20)  # every corpus: these files, repeated
    tok_dir = tmp / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        train_bpe((text for _, text in files[:1500]), vocab_size=VOCAB).save_pretrained(str(tok_dir))
    corpora = {}
    for mb in (max(size // 4, 1), size):
        path = tmp / f"codeparrot-local-{mb}mb.jsonl"
        corpora[mb] = {"path": str(path), **write_corpus(path, mb, files)}
    if big > size:
        path = tmp / f"codeparrot-local-{big}mb.jsonl"
        corpora[big] = {"path": str(path), **write_corpus(path, big, files)}
    return {"size": size, "big": big if big > size else 0, "tokenizer": str(tok_dir), "corpora": corpora}


def memory(r: dict) -> str:
    """A measurement's memory figure: its anonymous memory peak, with its workers' where it had any."""
    workers = r["tree_anon_mb"] - r["anon_mb"]
    return f"peak anonymous memory {r['anon_mb']:.0f} MB" + (f" ({r['tree_anon_mb']:.0f} MB with its workers)"
                                                              if workers > 50 else "")


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    from common import Row

    env = setup(quick, tmp)
    size, small = env["size"], min(env["corpora"])
    big = env["corpora"][size]
    mb = big["content_bytes"] / 2**20
    procs = max(2, min(os.cpu_count() or 2, 8))
    cache_root = Path(tempfile.mkdtemp(prefix="cache-", dir=tmp))

    def measure(name, recipe, num_proc, corpus=big, cache=None):
        cache = cache or Path(tempfile.mkdtemp(prefix="cache-", dir=cache_root))
        r = run_child({"recipe": recipe, "num_proc": num_proc, "data": corpus["path"], "tokenizer": env["tokenizer"]},
                      cache)
        r["cache"] = cache
        print(f"  clm data: {name}: {r['seconds']:.1f} s, {r['blocks']} blocks, {memory(r)}, "
              f"stages {json.dumps({k: round(v, 1) for k, v in r['stages'].items()})}", file=sys.stderr, flush=True)
        return r

    course = measure("course map", "course", 0)
    course_np = measure(f"course map num_proc={procs}", "course", procs)
    ours = measure("nlpfit", "nlpfit", 0)
    ours_np = measure(f"nlpfit --num-proc {procs}", "nlpfit", procs)
    again = measure("nlpfit, second run", "nlpfit", procs, cache=ours_np["cache"])
    assert "reusing the blocks" in again["log"], again["log"][-2000:]
    ours_small = measure(f"nlpfit, {small} MB", "nlpfit", 0, corpus=env["corpora"][small])

    def quality(r):
        same = r["blocks"] == course["blocks"] and r["token_sum"] == course["token_sum"]
        return f"{r['blocks']:,} blocks" + ("" if r is course else (", same as the course's" if same else
                                                                        ", DIFFERENT from the course's"))

    def note(r, extra=""):
        return f"{mb:.0f} MB, {memory(r)}{extra}"

    rows = [Row("clm", "data preparation", "load_dataset + map(tokenize), course recipe", mb / course["seconds"],
                "MB/s", quality(course), course["seconds"], note(course)),
            Row("clm", "data preparation", f"load_dataset + map(tokenize, num_proc={procs})", mb / course_np["seconds"],
                "MB/s", quality(course_np), course_np["seconds"], note(course_np)),
            Row("clm", "data preparation", "nlpfit train clm (load_data + preprocess)", mb / ours["seconds"], "MB/s",
                quality(ours), ours["seconds"],
                note(ours, f"; at {small} MB: {ours_small['anon_mb']:.0f} MB")),
            Row("clm", "data preparation", f"nlpfit train clm --num-proc {procs}", mb / ours_np["seconds"], "MB/s",
                quality(ours_np), ours_np["seconds"], note(ours_np)),
            Row("clm", "data preparation", "nlpfit train clm, second run (Arrow cache reused)", mb / again["seconds"],
                "MB/s", quality(again), again["seconds"], note(again))]
    if env["big"]:  # codeparrot's scale: nlpfit alone, once, then its second run
        corpus = env["corpora"][env["big"]]
        gb_mb = corpus["content_bytes"] / 2**20
        first = measure(f"nlpfit --num-proc {procs}, {gb_mb:.0f} MB", "nlpfit", procs, corpus=corpus)
        second = measure(f"nlpfit, second run, {gb_mb:.0f} MB", "nlpfit", procs, corpus=corpus, cache=first["cache"])
        assert "reusing the blocks" in second["log"], second["log"][-2000:]
        for name, r in ((f"nlpfit train clm --num-proc {procs}, {gb_mb:.0f} MB corpus", first),
                        (f"the same, second run (Arrow cache reused), {gb_mb:.0f} MB corpus", second)):
            rows.append(Row("clm", "data preparation", name, gb_mb / r["seconds"], "MB/s", f"{r['blocks']:,} blocks",
                            r["seconds"], memory(r)))
        os.unlink(corpus["path"])
    import shutil

    shutil.rmtree(cache_root, ignore_errors=True)
    return rows


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    """No torch.profiler profiles: the data path runs no tensor operators (the tokenizer is Rust and
    Arrow is C++, which the profiler does not see).  The section's log gives the time per stage
    (reading the file into Arrow, tokenizing and cutting) instead."""
    return []


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))
    print(json.dumps(child(json.loads(sys.argv[1]))))
