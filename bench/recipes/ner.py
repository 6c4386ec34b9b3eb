"""Token classification (bench/bench_ner.py has the details): one epoch of the course's Trainer
recipe against `nlpfit train ner` (fp32, bf16), and pipeline("token-classification") per text
against `nlpfit predict` (fp32, bf16), on the packaged MiniLM and WNUT-16."""

from __future__ import annotations

from pathlib import Path

from common import Row, device_precisions


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    import bench_ner as b
    from nlpfit.models import packaged_minilm

    tmp.mkdir(parents=True, exist_ok=True)
    max_train = 400 if quick else 0
    _, _, raw, facts = b.default_data(max_train)
    texts = [" ".join(t) for split in ("validation", "test") for t in raw[split]["tokens"]]
    if quick:
        texts = texts[:200]
    plain = b.plain_trainer_epoch(packaged_minilm(), raw, list(facts.labels), str(tmp / "plain"))
    rows = [Row("ner", "training", "Trainer, course recipe (random order)", plain["rate"], "real tokens/s",
                seconds=plain["seconds"])]
    for precision in ["no", *device_precisions()]:
        ours = b.nlpfit_epoch(str(tmp / f"ours-{precision}"), max_train, precision)
        rows.append(Row("ner", "training", "nlpfit train" + (f" --mixed-precision {precision}" if precision != "no"
                                                             else ""),
                        ours["rate"], "real tokens/s", f"val F1 {ours['f1']:.3f}", ours["seconds"]))
    p_plain, p_ours, p_bf16 = b.predict_all(str(tmp / "ours-no"), texts, repeat)
    rows.append(Row("ner", "prediction", "pipeline(\"token-classification\"), one text per call",
                    p_plain["sentences"] / p_plain["seconds"], "texts/s", seconds=p_plain["seconds"]))
    for name, r in (("nlpfit predict", p_ours), ("nlpfit predict --precision bf16", p_bf16)):
        rows.append(Row("ner", "prediction", name, r["sentences"] / r["seconds"], "texts/s",
                        f"same entities {r['same']:.1%}", r["seconds"]))
    return rows


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    """nlpfit's training steps on length-grouped batches of 16 (the engine's way: forward, backward,
    clipping, fused AdamW) and one batched prediction pass over the held-out sentences (batches of 64,
    longest first, inference mode), fp32 and bf16 autocast, on the offline default (MiniLM, WNUT-16)."""
    import functools
    import random

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    import bench_ner as b
    from profiling import Runs, training_step

    from nlpfit.engines.loop import LengthGroupedBatches
    from nlpfit.models import packaged_minilm

    cfg, _, raw, facts = b.default_data(0)
    path = packaged_minilm()
    tokenizer = AutoTokenizer.from_pretrained(path)
    enc = tokenizer([list(t) for t in raw["train"]["tokens"]], is_split_into_words=True, truncation=True)
    lengths = [len(x) for x in enc["input_ids"]]
    steps = 10 if quick else 20
    batches = []
    for idx in random.Random(0).sample(list(LengthGroupedBatches(lengths, 16, cfg.seed, True)), steps + 1):
        batch = tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in idx]}, return_tensors="pt")
        batch["labels"] = torch.randint(0, len(facts.labels), batch["input_ids"].shape)
        batches.append(batch)
    texts = [" ".join(t) for split in ("validation", "test") for t in raw[split]["tokens"]]
    enc = tokenizer(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))
    predict_batches = [tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in order[s:s + 64]]},
                                     return_tensors="pt") for s in range(0, len(order), 64)]

    def predict(model, precision: str) -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            for batch in predict_batches:
                model(**batch)

    runs = Runs()
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(facts.labels))
        runs.steps(f"training, {steps} steps of 16 sentences, {precision}",
                   training_step(model, lambda m, batch: m(**batch).loss, 0.01, cfg.lr, precision), batches)
        runs.add(f"prediction, {len(texts)} texts in batches of 64, {precision}",
                 functools.partial(predict, model, precision))
    return runs.profiles()
