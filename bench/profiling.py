"""What the profiles of bench/ share (`profile(quick, tmp)` of each section in bench/recipes/, run by
profile_tasks.py): a training step the engine's way, a profiled run after an unprofiled warm-up, and
the table row that sorts a profile's time by kind of operation.

A run is profiled after it has run once unprofiled (or, for training, after a first step): its first
pass pays one-time costs (kernels set up for new shapes, memory touched for the first time) that are
not where a run spends its time, and that would otherwise fill the "everything else" share.  It is
then timed unprofiled once more, and that wall time stands beside the profiled time: the profiler
costs time per operator, and, recording, it also keeps the allocator from reusing freed blocks, so a
run with large short-lived tensors (a language model's logits) pays page faults under the profiler
that it does not pay without it.  Where the two times part, the shares are those of the profiled run.
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
    """One optimizer step on a batch, as nlpfit's engine takes it: the task's loss (under bf16 autocast
    for `precision` "bf16"), backward, gradient clipping at 1.0, fused AdamW with the engine's groups."""
    from nlpfit.engines.loop import param_groups

    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, fused=True)

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


@dataclass
class Profiled:
    """A profiled run: torch.profiler's record of it, and the wall time of the same run unprofiled."""

    prof: object
    wall_s: float


def profiled(run: Callable, warmup: Callable | None = None) -> Profiled:
    """torch.profiler (CPU, with FLOPs) over `run()`, after `warmup()` (by default `run` itself) ran once
    and `run()` once more, timed, both unprofiled."""
    (warmup or run)()
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        run()
    return Profiled(prof, wall)


def profiled_steps(step: Callable, batches: list) -> Profiled:
    """The steps on `batches[1:]`, after a first step on `batches[0]` (the same batches are stepped on
    twice: timed, then profiled)."""
    return profiled(lambda: [step(b) for b in batches[1:]], warmup=lambda: step(batches[0]))


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
    return (f"| {task} | {name} | {run.wall_s:.2f} s | {total:.2f} s | {parts} | "
            f"{rate:.0f} GFLOP/s ({rate / peak:.0%}) |")
