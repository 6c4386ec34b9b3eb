"""Peak memory of `nlpfit train clm --streaming` data loading as the corpus grows.

Builds corpora of real Python source (the data-science files of the installed packages, repeated
until each size is reached), then, in a fresh process per measurement, iterates every training
block of the CLM task's own streaming path (CodeCorpus -> datasets.IterableDataset -> tokenize ->
keep full blocks -> shuffle buffer), exactly what the engines consume; and, for contrast, the naive
way (all files read into a list, all blocks tokenized into a list).  Reports peak RSS (ru_maxrss),
RSS before iterating, blocks and time.

    .venv/bin/python bench/bench_clm_streaming.py                 # 16, 64, 256 MB
    .venv/bin/python bench/bench_clm_streaming.py --sizes 8 32    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_corpus(folder: Path, size_mb: int, sources: list[str]) -> int:
    """Real source files copied round-robin into `folder` until `size_mb` is reached."""
    folder.mkdir(parents=True, exist_ok=True)
    total, i = 0, 0
    while total < size_mb * 2**20:
        text = sources[i % len(sources)]
        sub = folder / f"r{i // 1000:04d}"
        sub.mkdir(exist_ok=True)
        (sub / f"m{i:06d}.py").write_text(text, encoding="utf-8")
        total += len(text.encode("utf-8"))
        i += 1
    return i


def child(mode: str, folder: str, tokenizer_dir: str, context_length: int) -> dict:
    from transformers import AutoTokenizer

    from nlpfit.config import RunConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    start = time.perf_counter()
    if mode == "stream":
        from nlpfit.tasks import make_task

        cfg = RunConfig(data=[folder], max_steps=1, validation_split=0.01, task="clm",
                        task_options={"streaming": True, "filter_keywords": "", "context_length": context_length,
                                      "max_stream_eval_files": 20})
        task = make_task(cfg)
        raw, facts = task.load_data()
        tok.pad_token = tok.eos_token
        features, _ = task.preprocess(raw, tok, None, facts, training=True)
        before = rss_mb()
        n = sum(1 for _ in features["train"])
    else:  # the naive way: everything in memory
        from nlpfit.data.code import CodeCorpus

        before = rss_mb()
        texts = list(CodeCorpus((folder,), validation=0.0).texts("train"))
        blocks = []
        for i in range(0, len(texts), 64):
            enc = tok(texts[i:i + 64], truncation=True, max_length=context_length, return_overflowing_tokens=True)
            blocks += [ids for ids in enc["input_ids"] if len(ids) == context_length]
        n = len(blocks)
    return {"mode": mode, "blocks": n, "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak_mb(), 1),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256], help="corpus sizes in MB")
    ap.add_argument("--modes", nargs="+", default=["stream", "in-memory"])
    ap.add_argument("--context-length", type=int, default=128)
    ap.add_argument("--workdir", default=None, help="where the corpora are written (default: a temp folder)")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "FOLDER", "TOKENIZER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.context_length)))
        return

    from nlpfit.data.code import DS_KEYWORDS, CodeCorpus, default_sources
    from nlpfit.tokenizer_training import train_bpe

    work = Path(args.workdir or tempfile.mkdtemp(prefix="nlpfit-bench-clm-"))
    sources = list(CodeCorpus(tuple(default_sources()), keywords=DS_KEYWORDS, validation=0.0).texts("train", limit=2000))
    tok_dir = work / "tok"
    train_bpe(sources[:300], vocab_size=8000).save_pretrained(tok_dir)
    rows = []
    for size in args.sizes:
        folder = work / f"corpus-{size}mb"
        n_files = build_corpus(folder, size, sources)
        for mode in args.modes:
            proc = subprocess.run([sys.executable, __file__, "--context-length", str(args.context_length),
                                   "--child", mode, str(folder), str(tok_dir)], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            row = {"corpus_mb": size, "files": n_files, **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"{'corpus MB':>9}  {'files':>6}  {'mode':<9}  {'blocks':>8}  {'RSS before MB':>13}  {'peak RSS MB':>11}  {'s':>6}")
    for r in rows:
        print(f"{r['corpus_mb']:9d}  {r['files']:6d}  {r['mode']:<9}  {r['blocks']:8d}  {r['rss_before_mb']:13.1f}  "
              f"{r['peak_rss_mb']:11.1f}  {r['seconds']:6.1f}")
    if not args.workdir:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
