"""`nlpfit serve` under load: dynamic batching against one model call per request.

Trains the offline NER default for one epoch (or takes --model-dir), starts `nlpfit serve` in a
process of its own, and has --clients threads of this process send --requests requests of one
sentence each (the 479 held-out sentences, repeated as needed) over loopback, as fast as the
answers come back. Runs the server with batching off (--max-wait-ms 0: every request is its own
model call, as a plain pipeline behind HTTP would do) and on (the default 5 ms), and prints the
errors (any answer but 200), sentences per second, latency percentiles and the share of answers
equal to the unbatched server's.

    .venv/bin/python bench/bench_serve.py                 # a few minutes on 2 cores
    .venv/bin/python bench/bench_serve.py --model-dir runs/wnut --clients 64
    .venv/bin/python bench/bench_serve.py --model-dir runs/wnut --clients 1000 --requests 1000
    .venv/bin/python bench/bench_serve.py --model-dir runs/wnut --server-src /tmp/old/src   # another version
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
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


def post(base: str, text: str) -> tuple[float, list | None, str | None]:
    """(seconds, rows, error): one request of one sentence."""
    body = json.dumps({"inputs": [text]}).encode()
    req = urllib.request.Request(base + "/predict", data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            rows = json.loads(resp.read())["predictions"]
        return time.perf_counter() - start, rows, None
    except urllib.error.HTTPError as err:
        return time.perf_counter() - start, None, f"HTTP {err.code}: {err.read()[:200]!r}"
    except OSError as err:
        return time.perf_counter() - start, None, f"{type(err).__name__}: {err}"


def start_server(model_dir: str, max_wait_ms: float, server_src: str | None) -> tuple[subprocess.Popen, str]:
    """`nlpfit serve` in its own process (clients and server do not share an interpreter)."""
    env = dict(os.environ)
    if server_src:
        env["PYTHONPATH"] = server_src
    proc = subprocess.Popen([sys.executable, "-m", "nlpfit", "serve", model_dir, "--port", "0",
                             "--max-wait-ms", str(max_wait_ms)], stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if line.startswith("serving "):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining the access log
            return proc, line.split(" on ")[1].split()[0]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def load(model_dir: str, texts: list[str], clients: int, max_wait_ms: float, server_src: str | None) -> dict:
    proc, base = start_server(model_dir, max_wait_ms, server_src)
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
    errors = [r[2] for r in results if r[2] is not None]
    return {"seconds": seconds, "rows": [r[1][0] if r[1] else None for r in results], "errors": errors,
            "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99)}


def entity_keys(row: dict | None) -> list | None:
    return None if row is None else [(e["entity_group"], e["start"], e["end"]) for e in row["entities"]]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", help="a trained NER model folder (default: train the offline default for 1 epoch)")
    p.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    p.add_argument("--requests", type=int, default=0, help="requests in all (default: one per held-out sentence, 479)")
    p.add_argument("--modes", default="off,on", help="batching off (--max-wait-ms 0), on (5 ms), or both")
    p.add_argument("--server-src", help="PYTHONPATH of the server process (to measure another version of nlpfit)")
    p.add_argument("--repeat", type=int, default=1, help="runs per mode; the table shows the run of median "
                                                            "throughput, the errors of all runs")
    args = p.parse_args()
    texts = held_out_texts()
    n = args.requests or len(texts)
    texts = [texts[i % len(texts)] for i in range(n)]
    modes = [m.strip() for m in args.modes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if not model_dir:
            model_dir = f"{tmp}/ner"
            subprocess.run([sys.executable, "-m", "nlpfit", "train", "ner", "--output", model_dir, "--epochs", "1"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs = {}
        for m in modes:
            tries = sorted((load(model_dir, texts, args.clients, 0 if m == "off" else 5, args.server_src)
                            for _ in range(args.repeat)), key=lambda r: r["seconds"])
            runs[m] = {**tries[len(tries) // 2], "all_errors": [e for r in tries for e in r["errors"]]}
    names = {"off": "batching off (one model call per request)", "on": "dynamic batching (5 ms)"}
    alone = runs.get("off")
    print(f"{n} requests of one sentence each, {args.clients} concurrent clients"
          f"{f', median of {args.repeat} runs' if args.repeat > 1 else ''}, load average {os.getloadavg()[0]:.1f}\n")
    print("| clients | nlpfit serve | errors | sentences/s | latency p50 | latency p95 | latency p99 | ratio | same entities |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, r in runs.items():
        ok = n - len(r["errors"])
        ratio = f"**{alone['seconds'] / r['seconds']:.2f}x**" if alone else ""
        same = ""
        if alone and r is not alone:
            same = f"{sum(entity_keys(a) == entity_keys(b) for a, b in zip(alone['rows'], r['rows'])) / n:.1%}"
        print(f"| {args.clients} | {names.get(mode, mode)} | {len(r['all_errors'])} | {ok / r['seconds']:,.1f} | "
              f"{r['p50'] * 1000:.0f} ms | {r['p95'] * 1000:.0f} ms | {r['p99'] * 1000:.0f} ms | {ratio} | {same} |")
    for mode, r in runs.items():
        for err in sorted(set(r["all_errors"]))[:5]:
            print(f"{mode}: {r['all_errors'].count(err)} x {err}", file=sys.stderr)


if __name__ == "__main__":
    main()
