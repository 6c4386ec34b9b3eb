"""Where token classification spends its time, on the offline default (MiniLM, WNUT-16 split).

Profiles (torch.profiler) 20 training steps on length-grouped batches of 16, the engine's way
(forward, backward, gradient clipping, fused AdamW), and one batched prediction pass over the 479
held-out sentences, in fp32 and under bf16 autocast. Prints each run's time by kind of operation
and the rate its matrix products reach, next to the rate of one large matrix product on this machine
(the most the CPU gives): the ceiling on any speed-up that keeps the same model and data.

    .venv/bin/python bench/profile_ner.py       # ~2 minutes on 2 cores
"""

from __future__ import annotations

import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

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


def breakdown(prof) -> tuple[dict, float]:
    kinds: dict[str, float] = {}
    mm_flops = mm_time = 0.0
    for e in prof.key_averages():
        kind = KINDS.get(e.key, "everything else")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_cpu_time_total / 1e6
        if kind == "matrix products":
            mm_flops += e.flops
            mm_time += e.self_cpu_time_total / 1e6
    return kinds, mm_flops / max(mm_time, 1e-9) / 1e9


def report(name: str, prof, peak: float) -> None:
    kinds, rate = breakdown(prof)
    total = sum(kinds.values())
    parts = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    print(f"| {name} | {total:.2f} s | {parts} | {rate:.0f} GFLOP/s ({rate / peak:.0%}) |", flush=True)


def main() -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from nlpfit.engines.loop import LengthGroupedBatches, param_groups
    from nlpfit.models import packaged_minilm
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task

    cfg = resolve(default_config("ner", output="unused"))
    task = make_task(cfg)
    raw, facts = task.load_data()
    path = packaged_minilm()
    tokenizer = AutoTokenizer.from_pretrained(path)
    peaks = {torch.float32: peak_gflops(torch.float32), torch.bfloat16: peak_gflops(torch.bfloat16)}
    print(f"one 2048x2048 matrix product: fp32 {peaks[torch.float32]:.0f} GFLOP/s, "
          f"bf16 {peaks[torch.bfloat16]:.0f} GFLOP/s ({torch.get_num_threads()} threads)\n")
    print("| run | profiled time | share by kind of operation | matrix products' rate (of the peak) |")
    print("|---|---|---|---|")

    enc = tokenizer([list(t) for t in raw["train"]["tokens"]], is_split_into_words=True, truncation=True)
    lengths = [len(x) for x in enc["input_ids"]]
    sampler = LengthGroupedBatches(lengths, 16, cfg.seed, True)
    batches = random.Random(0).sample(list(sampler), 23)
    padded = []
    for idx in batches:
        b = tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in idx]}, return_tensors="pt")
        b["labels"] = torch.randint(0, len(facts.labels), b["input_ids"].shape)
        padded.append(b)
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16 autocast")):
        torch.manual_seed(0)
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(facts.labels)).train()
        opt = torch.optim.AdamW(param_groups(model, 0.01), lr=cfg.lr, fused=True)

        def step(b):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float32):
                loss = model(**b).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()

        for b in padded[:3]:
            step(b)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            for b in padded[3:]:
                step(b)
        report(f"training, 20 steps, {name}", prof, peaks[dtype])

    texts = [" ".join(t) for split in ("validation", "test") for t in raw[split]["tokens"]]
    enc = tokenizer(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(facts.labels)).eval()
    pred_batches = [tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in order[s:s + 64]]}, return_tensors="pt")
                    for s in range(0, len(order), 64)]
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16 autocast")):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float32):
            model(**pred_batches[-1])
            with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
                for b in pred_batches:
                    model(**b)
        report(f"prediction, 479 texts in batches of 64, {name}", prof, peaks[dtype])


if __name__ == "__main__":
    main()
