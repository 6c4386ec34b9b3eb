"""Where every task spends its time: torch.profiler over nlpfit's own code paths.

Each section of bench/recipes/ (see bench_tasks.py) profiles a few training steps and one
evaluation or prediction pass of its task, in fp32 and under bf16 autocast (`profile(quick, tmp)`),
each after an unprofiled warm-up (bench/profiling.py).  For every run this prints its wall time
unprofiled and the profiled time (each with its page faults), the share of each kind of operation,
and the rate its matrix products
reach next to the rate of one large matrix product on this machine (the most the hardware gives, in
the run's precision).

    .venv/bin/python bench/profile_tasks.py                  # make profile: every task
    .venv/bin/python bench/profile_tasks.py --only mlm,qa --quick
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import common  # noqa: E402,F401  (offline settings)
import torch  # noqa: E402

from profiling import peak_gflops, row  # noqa: E402

from nlpfit.allocator import keep_freed_memory  # noqa: E402

SECTIONS = ("ner", "mlm", "clm", "translation", "summarization", "qa")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and smaller data (as bench_tasks.py --quick)")
    p.add_argument("--only", default="", help="comma-separated sections: " + ", ".join(SECTIONS))
    args = p.parse_args()
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    keep_freed_memory()  # what every nlpfit run does (nlpfit.allocator); only nlpfit's code is profiled here
    peaks = {"fp32": peak_gflops(torch.float32), "bf16": peak_gflops(torch.bfloat16)}
    print(f"one 2048x2048 matrix product: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads)\n", flush=True)
    lines = ["| task | run | wall time (page faults) | profiled time (page faults) | share by kind of operation "
             "(profiled) | matrix products' rate (of the peak) |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="nlpfit-profile-") as tmp:
        for name in names:
            module = importlib.import_module("recipes." + name.replace("-", "_"))
            for run, prof in module.profile(quick=args.quick, tmp=Path(tmp) / name):
                lines.append(row(name, run, prof, peaks))
                print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
