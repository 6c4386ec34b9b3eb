"""What the benchmarks of bench/ share: best-of-N timing, `nlpfit train` in a child process, and
the one table `bench_tasks.py` prints.

Rules, the same for every task: one process tree on one machine; the plain transformers recipe and
nlpfit run on the same model and data; each timed evaluation or prediction stage runs `repeat` times
and its best time counts (timeit's rule: the least disturbed run); model loading is timed apart;
training speed is the steady rate after the first step, on both sides (`StepClock`,
`nlpfit_steady`); speeds are compared as ratios to the plain recipe of the same stage, with the
quality figure beside each speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@dataclass
class Row:
    """One timed stage of one recipe.  The first row of a (task, stage) pair is the plain recipe:
    the ratios of the others are to it."""

    task: str
    stage: str  # training, evaluation, prediction, post-processing, data preparation
    recipe: str
    rate: float  # items per second, in `unit`
    unit: str  # "real tokens/s", "examples/s", "MB/s", ...
    quality: str = ""  # the quality figure beside the speed, e.g. "BLEU 6.11"
    seconds: float | None = None
    note: str = ""


def best_of(repeat: int, fn):
    """(best wall time of `repeat` calls of fn, the last result)."""
    times, result = [], None
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def timed(fn):
    """(wall time of one call of fn, its result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# ---- training speed: the steps after the first, the same way on both sides --------------------------
# A run's first optimizer step pays one-time costs (kernels set up for its shapes, memory touched for the
# first time), which weigh heavily in a run of a few dozen steps, and more in the first recipe this
# process runs than in later ones; a Trainer's train() also sets itself up inside the call.  Training speed
# is therefore the real (non-padding) tokens of steps 2..N over the time from the end of step 1 to the
# end of step N: for the plain recipe from its batches and step ends (`StepClock`), for nlpfit from its
# log lines, one per step (`nlpfit_steady`).
class StepClock:
    """The real tokens of each batch a Trainer's loader makes (`counting` wraps its data collator; batches
    are made in the order the steps take them) and the end time of each optimizer step (`callback`).
    One micro-batch per step: the bench's recipes accumulate no gradients."""

    def __init__(self):
        self.tokens: list[int] = []
        self.ends: list[float] = []

    def counting(self, collate):
        def collate_and_count(features):
            batch = collate(features)
            mask = batch.get("attention_mask")
            self.tokens.append(int(mask.sum()) if mask is not None else batch["input_ids"].numel())
            return batch

        return collate_and_count

    def callback(self):
        import torch
        from transformers import TrainerCallback

        ends = self.ends

        class StepEnds(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                ends.append(time.perf_counter())

        return StepEnds()

    def steady(self) -> dict:
        """{"rate": real tokens/s, "tokens", "seconds"} over steps 2..N."""
        steps = len(self.ends)
        if steps < 2 or len(self.tokens) < steps:
            raise RuntimeError(f"StepClock: {steps} steps timed, {len(self.tokens)} batches counted")
        tokens, seconds = sum(self.tokens[1:steps]), self.ends[-1] - self.ends[0]
        return {"rate": tokens / seconds, "tokens": tokens, "seconds": seconds}


def nlpfit_steady(metrics: dict) -> dict:
    """The same figures for an `nlpfit train ... --logging-steps 1` run, from metrics.json's log: each
    line's tokens (`tokens_seen` less the line before's) over its seconds (tokens / `tokens_per_second`)."""
    log = metrics["log"]
    if [e["step"] for e in log] != list(range(1, len(log) + 1)) or len(log) < 2:
        raise RuntimeError("nlpfit_steady needs one log line per step (--logging-steps 1) and two steps or more")
    seen = [0] + [e["tokens_seen"] for e in log]
    tokens = [b - a for a, b in zip(seen, seen[1:])]
    seconds = sum(t / e["tokens_per_second"] for t, e in zip(tokens[1:], log[1:]))
    return {"rate": sum(tokens[1:]) / seconds, "tokens": sum(tokens[1:]), "seconds": seconds}


def nlpfit_training_row(task: str, metrics: dict, precision: str, quality: str = "", plain_rate: float | None = None,
                        name: str = "nlpfit train") -> Row:
    """The row of an `nlpfit train ... --logging-steps 1 --mixed-precision PRECISION` run (its metrics.json):
    its steady rate, and its ratio to the Trainer's own run in the same precision where `plain_rate` is given."""
    steady = nlpfit_steady(metrics)
    note = (f"{steady['rate'] / plain_rate:.2f}x the Trainer in {precision if precision != 'no' else 'fp32'}"
            if plain_rate else "")
    return Row(task, "training", name + (f" --mixed-precision {precision}" if precision != "no" else ""),
               steady["rate"], "real tokens/s", quality, steady["seconds"], note)


def nlpfit(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    """`nlpfit ARGS` in a child process (same interpreter); fails loudly with its stderr."""
    cmd = [sys.executable, "-m", "nlpfit", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stderr or '')[-3000:]}")
    return proc


def nlpfit_train(task: str, out: str | Path, *args: str) -> dict:
    """`nlpfit train TASK --output OUT ARGS --overwrite` in a child process; its metrics.json."""
    nlpfit("train", task, "--output", str(out), "--overwrite", *args)
    return json.loads((Path(out) / "metrics.json").read_text())


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def device_precisions() -> list[str]:
    """The reduced precisions worth timing here: bf16 where the CPU or GPU runs it natively."""
    import torch

    if torch.cuda.is_available():
        return ["bf16"] if torch.cuda.is_bf16_supported() else []
    return ["bf16"] if torch.backends.mkldnn.is_available() and _cpu_has_bf16() else []


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def table(rows: list[Row]) -> str:
    """Markdown: one line per row, the ratio to the first row of its (task, stage)."""
    base: dict[tuple, Row] = {}
    lines = ["| task | stage | recipe | speed | ratio | quality |", "|---|---|---|---|---|---|"]
    for r in rows:
        first = base.setdefault((r.task, r.stage), r)
        ratio = "1.00x" if first is r else f"**{r.rate / first.rate:.2f}x**"
        speed = f"{r.rate:,.1f} {r.unit}" if r.rate < 100 else f"{r.rate:,.0f} {r.unit}"
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.task} | {r.stage} | {r.recipe}{note} | {speed} | {ratio} | {r.quality} |")
    return "\n".join(lines)
