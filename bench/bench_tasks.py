"""Every task against its plain transformers recipe: one run, one machine, one table.

For each task, the course's plain recipe and nlpfit run on the same model and data, each timed the
same way (training: real tokens per second; evaluation and prediction: examples per second, model
loading apart; data preparation: MB per second), with the quality figure beside every speed.  The
sections live in bench/recipes/ (one module per task, each says what it compares):

    ner            Trainer + pipeline("token-classification") vs nlpfit train / predict
    mlm            the course's MLM Trainer set-up and pipeline("fill-mask") vs nlpfit
    clm            the course's CodeParrot Trainer set-up and pipeline("text-generation") vs nlpfit
    clm-data       the course's tokenize-and-chunk map vs nlpfit's data path on a large code corpus
    translation    Seq2SeqTrainer.evaluate(predict_with_generate) + the course's compute_metrics vs nlpfit
    summarization  the same, with ROUGE
    qa             the course's QA preprocessing, Trainer.predict and post-processing vs nlpfit

    .venv/bin/python bench/bench_tasks.py              # make bench
    .venv/bin/python bench/bench_tasks.py --quick      # make bench-quick: small data, ~10 minutes on 2 cores
    .venv/bin/python bench/bench_tasks.py --only qa,mlm --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import machine, table  # noqa: E402

SECTIONS = ("ner", "mlm", "clm", "clm-data", "translation", "summarization", "qa")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data and few steps (about 10 minutes on 2 cores)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each timed stage; the best counts")
    p.add_argument("--only", default="", help="comma-separated sections (default: all): " + ", ".join(SECTIONS))
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    print(f"{machine()}; {'quick' if args.quick else 'full'} run, best of {args.repeat}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nlpfit-bench-") as tmp:
        for name in names:
            module = importlib.import_module("recipes." + name.replace("-", "_"))
            start = time.perf_counter()
            section = module.bench(quick=args.quick, repeat=args.repeat, tmp=Path(tmp) / name)
            rows += section
            print(f"\n[{name}: {time.perf_counter() - start:.0f} s]\n{table(section)}", flush=True)
    print("\n" + table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
