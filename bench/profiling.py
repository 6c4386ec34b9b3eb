"""What the profiles of bench/ share (`profile(quick, tmp)` of each section in bench/recipes/, run by
profile_tasks.py): a training step the engine's way, a profiled run after an unprofiled warm-up, and
the table row that sorts a profile's time by kind of operation.

A run is profiled after it has run once unprofiled (or, for training, after a first step): its first
pass pays one-time costs (kernels set up for new shapes, memory touched for the first time) that are
not where a run spends its time, and that would otherwise fill the "everything else" share.  It is
then timed unprofiled once more (every run of a section is timed before any is profiled: `Runs`),
and that wall time stands beside the profiled time, each with its
page faults: the profiler costs time per operator, and its records, small allocations made at every
operator, keep the allocator from reusing freed blocks, so a run with large short-lived tensors (a
language model's logits, attention probabilities) faults in fresh memory under the profiler that it
reuses without it.  Where the two times part, the shares are those of the profiled run, and the
faults say where the difference went.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

KINDS = {  # aten op -> kind
    "aten::mm": "matrix products", "aten::addmm": "matrix products", "aten::bmm": "matrix products",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention kernel",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": "attention kernel",
    "aten::bernoulli_": "dropout masks", "aten::_fused_adamw_": "optimizer (fused AdamW)",
}


def peak_gflops(dtype) -> float:
    """The best rate of a large square matrix product (best of 5 timings of 3 products)."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        best = max(best, 3 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def training_step(model, loss_fn: Callable, weight_decay: float, lr: float, precision: str) -> Callable:
    """One optimizer step on a batch, as nlpfit's engine takes it: the model in training mode, the task's
    loss (under bf16 autocast for `precision` "bf16"), backward, gradient clipping at 1.0, fused AdamW
    with the engine's groups."""
    from nlpfit.engines.loop import param_groups

    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, fused=True)

    def step(batch) -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


@dataclass
class Profiled:
    """A profiled run: torch.profiler's record of it, and the wall time of the same run unprofiled, with
    the page faults (minor: memory touched for the first time) of each."""

    prof: object
    wall_s: float
    faults: int
    profiled_faults: int


def page_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Runs:
    """A section's runs, in two phases.  `add` runs one at once, a warm-up and then a timed pass, both
    unprofiled; `profiles()` then profiles every run added, in order (torch.profiler, CPU, with FLOPs).
    No timed pass comes after a profiled one: what a profiled run leaves in the heap (blocks it could
    not reuse, handed back to the system) would make the next timed pass fault them in again."""

    def __init__(self):
        self.runs: list[tuple[str, Callable, float, int]] = []

    def add(self, name: str, run: Callable, warmup: Callable | None = None) -> None:
        (warmup or run)()
        faults, start = page_faults(), time.perf_counter()
        run()
        self.runs.append((name, run, time.perf_counter() - start, page_faults() - faults))

    def steps(self, name: str, step: Callable, batches: list) -> None:
        """The steps on `batches[1:]`, after a first step on `batches[0]` (the same batches are stepped on
        again when profiled)."""
        self.add(name, lambda: [step(b) for b in batches[1:]], warmup=lambda: step(batches[0]))

    def profiles(self) -> list[tuple[str, Profiled]]:
        out = []
        for name, run, wall, faults in self.runs:
            before = page_faults()
            with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
                run()
            out.append((name, Profiled(prof, wall, faults, page_faults() - before)))
        return out


def breakdown(prof) -> tuple[dict, float]:
    """(seconds by kind of operation, GFLOP/s of the matrix products)."""
    kinds: dict[str, float] = {}
    mm_flops = mm_time = 0.0
    for e in prof.key_averages():
        kind = KINDS.get(e.key, "everything else")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_cpu_time_total / 1e6
        if kind == "matrix products":
            mm_flops += e.flops
            mm_time += e.self_cpu_time_total / 1e6
    return kinds, mm_flops / max(mm_time, 1e-9) / 1e9


def row(task: str, name: str, run: Profiled, peaks: dict) -> str:
    """One line of the profile table: the wall time unprofiled, the profiled time and its share by kind,
    the matrix products' rate."""
    kinds, rate = breakdown(run.prof)
    total = sum(kinds.values())
    parts = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]) if v / total >= 0.01)
    peak = peaks["bf16" if "bf16" in name else "fp32"]
    return (f"| {task} | {name} | {run.wall_s:.2f} s ({run.faults / 1000:,.0f}k) | {total:.2f} s "
            f"({run.profiled_faults / 1000:,.0f}k) | {parts} | {rate:.0f} GFLOP/s ({rate / peak:.0%}) |")
