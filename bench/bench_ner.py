"""Speed of nlpfit against the plain transformers recipe, on the same data, model and machine.

1. Training, one epoch on the offline default (packaged MiniLM, WNUT-16 80% train split):
   the course's plain recipe (Trainer, random order, DataCollatorForTokenClassification, lr 5e-5,
   batch 16) versus `nlpfit train ner` on the accelerate engine (its default recipe, length-grouped
   batches).  Both are timed over the steps after the first (common.StepClock, common.nlpfit_steady);
   evaluation time is not counted for either.
2. Prediction on the held-out sentences with one trained model (loading timed apart): the plain
   `pipeline("token-classification")` called on each text, as the course does, versus
   `nlpfit predict` (texts sorted by length, batched, inference mode; fp32 and bf16), with the
   share of texts whose entities (type, start, end) equal the plain pipeline's. Each predictor
   runs --repeat times (default 3) and its best time counts, the same rule for all.

Prints real (non-padding) tokens per second (and sentences per second in prediction) and the ratios.

    .venv/bin/python bench/bench_ner.py            # full run (~4 minutes on 2 cores)
    .venv/bin/python bench/bench_ner.py --quick    # 400 training sentences, 200 texts
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from common import StepClock, best_of, nlpfit_steady  # noqa: E402


def default_data(max_train: int):
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task

    cfg = resolve(default_config("ner", output="unused"))  # nlpfit's default recipe
    task = make_task(cfg)
    raw, facts = task.load_data()
    if max_train:
        raw["train"] = raw["train"].select(range(max_train))
    return cfg, task, raw, facts


def plain_trainer_epoch(model_path: str, raw, labels: list[str], out: str) -> dict:
    """The course's recipe, written as the course writes it."""
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    label2id = {l: i for i, l in enumerate(labels)}

    def align_labels_with_tokens(labels, word_ids):
        new_labels, current_word = [], None
        for word_id in word_ids:
            if word_id != current_word:
                current_word = word_id
                label = -100 if word_id is None else labels[word_id]
                new_labels.append(label)
            elif word_id is None:
                new_labels.append(-100)
            else:
                label = labels[word_id]
                if label % 2 == 1:  # the course's B- -> I- rule (relies on the label order)
                    label += 1
                new_labels.append(label)
        return new_labels

    def tokenize_and_align_labels(examples):
        tokenized = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True)
        tokenized["labels"] = [align_labels_with_tokens([label2id[t] for t in tags], tokenized.word_ids(i))
                               for i, tags in enumerate(examples["tags"])]
        return tokenized

    train = raw["train"].map(tokenize_and_align_labels, batched=True, remove_columns=raw["train"].column_names)
    collator = DataCollatorForTokenClassification(tokenizer=tokenizer)
    padded = [0]
    clock = StepClock()  # the bench's: real tokens of each batch, end of each step

    def counting_collator(features):
        batch = collator(features)
        padded[0] += batch["input_ids"].numel()
        return batch

    model = AutoModelForTokenClassification.from_pretrained(
        model_path, id2label=dict(enumerate(labels)), label2id=label2id)
    args = TrainingArguments(out, learning_rate=5e-5, num_train_epochs=1, per_device_train_batch_size=16,
                             weight_decay=0.01, eval_strategy="no", save_strategy="no", report_to="none",
                             disable_tqdm=True, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=clock.counting(counting_collator),
                      processing_class=tokenizer, callbacks=[clock.callback()])
    trainer.train()
    real = sum(len(x) for x in train["input_ids"])
    return {**clock.steady(), "padding": 1 - real / padded[0]}


def nlpfit_epoch(out: str, max_train: int, precision: str = "no") -> dict:
    """`nlpfit train ner --epochs 1` with the default recipe, in a child process (one precision each), a log
    line per step."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    cmd = [sys.executable, "-m", "nlpfit", "train", "ner", "--output", out, "--epochs", "1", "--overwrite",
           "--max-train-samples", str(max_train), "--mixed-precision", precision, "--logging-steps", "1"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {**nlpfit_steady(metrics), "f1": metrics["eval"]["f1"]}


def entity_keys(entities: list[dict]) -> list[tuple]:
    return [(e.get("entity_group"), e["start"], e["end"]) for e in entities]


def predict_all(model_dir: str, texts: list[str], repeat: int) -> list[dict]:
    """Plain pipeline, one text per call, then nlpfit predict in fp32 and bf16; loading timed apart.
    Each predictor runs `repeat` times on all texts; its best time counts."""
    from transformers import pipeline

    from nlpfit.run import load_run, predict_options
    from nlpfit.tasks import make_task
    from nlpfit.tasks.token_classification import load_pipeline

    start = time.perf_counter()
    pipe = pipeline("token-classification", model=model_dir, aggregation_strategy="simple")
    load = time.perf_counter() - start
    seconds, plain = best_of(repeat, lambda: [pipe(t) for t in texts])
    rows = [{"load": load, "seconds": seconds, "entities": [entity_keys(p) for p in plain]}]
    task = make_task(load_run(model_dir)[0])
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        ours_pipe = load_pipeline(model_dir)
        load = time.perf_counter() - start
        opts = predict_options(task, {"aggregation": "simple", "precision": precision})
        seconds, ours = best_of(repeat, lambda: list(task.predict_with(ours_pipe, texts, opts)))
        rows.append({"load": load, "seconds": seconds, "entities": [entity_keys(o["entities"]) for o in ours]})
    tokens = sum(len(x) for x in pipe.tokenizer(texts)["input_ids"])
    for r in rows:
        r.update(tokens=tokens, sentences=len(texts),
                 same=sum(a == b for a, b in zip(r["entities"], rows[0]["entities"])) / len(texts))
    return rows


def row(name: str, r: dict) -> str:
    return f"| {name} | {r['tokens'] / r['seconds']:,.0f} | {r['sentences'] / r['seconds']:,.1f} | {r['seconds']:.1f} |"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=3, help="prediction runs per predictor; the best counts")
    args = p.parse_args()
    max_train = 400 if args.quick else 0
    cfg, task, raw, facts = default_data(max_train)
    texts = [" ".join(t) for split in ("validation", "test") for t in raw[split]["tokens"]]
    if args.quick:
        texts = texts[:200]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; train {len(raw['train'])} sentences, "
          f"predict {len(texts)} texts", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        from nlpfit.models import packaged_minilm

        plain = plain_trainer_epoch(packaged_minilm(), raw, list(facts.labels), f"{tmp}/plain")
        ours = nlpfit_epoch(f"{tmp}/ours", max_train)
        ours_bf16 = nlpfit_epoch(f"{tmp}/ours-bf16", max_train, "bf16")
        p_plain, p_ours, p_bf16 = predict_all(f"{tmp}/ours", texts, args.repeat)
    print()
    print("| one epoch of training (steps after the first) | real tokens/s | seconds | ratio | validation F1 |")
    print("|---|---|---|---|---|")
    print(f"| transformers Trainer, course recipe (random order) | {plain['rate']:,.0f} | {plain['seconds']:.1f} | "
          "1.00x | |")
    for name, r in (("nlpfit, accelerate engine (length-grouped, fused AdamW)", ours),
                    ("nlpfit, same with --mixed-precision bf16", ours_bf16)):
        print(f"| {name} | {r['rate']:,.0f} | {r['seconds']:.1f} | **{r['rate'] / plain['rate']:.2f}x** | "
              f"{r['f1']:.3f} |")
    print(f"\npadding in the plain recipe's batches: {plain['padding']:.1%}")
    print()
    print("| prediction (inference; model loading apart) | real tokens/s | sentences/s | seconds | ratio "
          "| with loading | same entities |")
    print("|---|---|---|---|---|---|---|")
    total = lambda r: r["seconds"] + r["load"]  # noqa: E731
    print(row("transformers pipeline, one text per call", p_plain) + f" 1.00x | {total(p_plain):.1f} s, 1.00x | |")
    for name, r in (("nlpfit predict (sorted, batched, inference mode)", p_ours),
                    ("nlpfit predict --precision bf16", p_bf16)):
        print(row(name, r) + f" **{p_plain['seconds'] / r['seconds']:.2f}x** | {total(r):.1f} s, "
              f"{total(p_plain) / total(r):.2f}x | {r['same']:.1%} |")

if __name__ == "__main__":
    main()
