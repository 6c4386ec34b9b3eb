"""`nlpfit serve` under load: dynamic batching against one model call per request.

Trains the offline NER default for one epoch (or takes --model-dir), starts `nlpfit serve` in a
process of its own, and has --clients threads of this process send the 479 held-out sentences, one sentence per request, as
fast as the answers come back. Runs the server with batching off (--max-wait-ms 0: every request
is its own model call, as a plain pipeline behind HTTP would do) and on (the default 5 ms), and
prints sentences per second, latency percentiles and the share of answers equal to the unbatched
server's.

    .venv/bin/python bench/bench_serve.py                 # ~2 minutes on 2 cores
    .venv/bin/python bench/bench_serve.py --model-dir runs/wnut --clients 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def held_out_texts() -> list[str]:
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task

    cfg = resolve(default_config("ner", output="unused"))
    task = make_task(cfg)
    raw, _ = task.load_data()
    return [" ".join(t) for split in ("validation", "test") for t in raw[split]["tokens"]]


def post(base: str, text: str) -> tuple[float, list]:
    body = json.dumps({"inputs": [text]}).encode()
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(base + "/predict", data=body), timeout=300) as resp:
        rows = json.loads(resp.read())["predictions"]
    return time.perf_counter() - start, rows


def start_server(model_dir: str, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    """`nlpfit serve` in its own process (clients and server do not share an interpreter)."""
    proc = subprocess.Popen([sys.executable, "-m", "nlpfit", "serve", model_dir, "--port", "0",
                             "--max-wait-ms", str(max_wait_ms)], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("serving "):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining the log
            return proc, line.split(" on ")[1].split()[0]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


def load(model_dir: str, texts: list[str], clients: int, max_wait_ms: float) -> dict:
    proc, base = start_server(model_dir, max_wait_ms)
    try:
        post(base, texts[0])  # warm up
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda t: post(base, t), texts))
        seconds = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait()
    latencies = sorted(r[0] for r in results)
    return {"seconds": seconds, "rows": [r[1][0] for r in results],
            "p50": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))]}


def entity_keys(row: dict) -> list:
    return [(e["entity_group"], e["start"], e["end"]) for e in row["entities"]]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", help="a trained NER model folder (default: train the offline default for 1 epoch)")
    p.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    args = p.parse_args()
    texts = held_out_texts()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if not model_dir:
            model_dir = f"{tmp}/ner"
            subprocess.run([sys.executable, "-m", "nlpfit", "train", "ner", "--output", model_dir, "--epochs", "1"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        alone = load(model_dir, texts, args.clients, 0)
        batched = load(model_dir, texts, args.clients, 5)
    same = sum(entity_keys(a) == entity_keys(b) for a, b in zip(alone["rows"], batched["rows"])) / len(texts)
    print(f"{len(texts)} requests of one sentence each, {args.clients} concurrent clients\n")
    print("| nlpfit serve | sentences/s | latency p50 | latency p95 | ratio | same entities |")
    print("|---|---|---|---|---|---|")
    for name, r in (("batching off (one model call per request)", alone), ("dynamic batching (5 ms)", batched)):
        print(f"| {name} | {len(texts) / r['seconds']:,.1f} | {r['p50'] * 1000:.0f} ms | {r['p95'] * 1000:.0f} ms | "
              f"**{alone['seconds'] / r['seconds']:.2f}x** | {same if r is batched else 1:.1%} |")


if __name__ == "__main__":
    main()
