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
