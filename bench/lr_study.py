"""The small study behind token classification's default recipe.

Trains the offline default (packaged MiniLM on the WNUT-16 80/10/10 split) for 3 epochs with several
learning rates, warmup ratios and schedules, and prints validation F1 after each epoch.

    .venv/bin/python bench/lr_study.py                       # the full grid
    .venv/bin/python bench/lr_study.py --grid 5e-5:0:linear 1e-4:0.1:linear
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GRID = ["5e-5:0:linear", "1e-4:0:linear", "1e-4:0.1:linear", "2e-4:0.1:linear", "3e-4:0.1:linear",
        "2e-4:0.1:cosine", "5e-4:0.1:linear"]


def run(lr: float, warmup: float, schedule: str, epochs: float, engine: str) -> dict:
    from nlpfit.run import train
    from nlpfit.tasks import default_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg = default_config("ner", output=f"{tmp}/out", lr=lr, warmup_ratio=warmup, scheduler=schedule,
                             epochs=epochs, engine=engine, batch_size=16)
        start = time.perf_counter()
        res = train(cfg)
        m = res["metrics"]
        return {"lr": lr, "warmup": warmup, "schedule": schedule,
                "f1_by_epoch": [round(h["eval"]["f1"], 3) for h in m["history"] if "train_loss" in h],
                "test_f1": round(m["test"]["f1"], 3), "minutes": round((time.perf_counter() - start) / 60, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grid", nargs="*", default=GRID, help="lr:warmup_ratio:schedule items")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--engine", default="accelerate")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    rows = []
    for item in args.grid:
        lr, warmup, schedule = item.split(":")
        rows.append(run(float(lr), float(warmup), schedule, args.epochs, args.engine))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| lr | warmup | schedule | validation F1 per epoch | test F1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lr']:g} | {r['warmup']:g} | {r['schedule']} | {' / '.join(f'{f:.3f}' for f in r['f1_by_epoch'])} "
              f"| {r['test_f1']:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
