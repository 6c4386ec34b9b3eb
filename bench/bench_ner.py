"""Speed of nlpfit against the plain transformers recipe, on the same data, model and machine.

1. Training, one epoch on the offline default (packaged MiniLM, WNUT-16 80% train split):
   the course's plain recipe (Trainer, random order, DataCollatorForTokenClassification, lr 5e-5,
   batch 16) versus `nlpfit train ner` on the accelerate engine (its default recipe, length-grouped
   batches).  Evaluation time is not counted for either.
2. Prediction on the held-out sentences with one trained model: the plain
   `pipeline("token-classification")` called on each text, as the course does, versus
   `nlpfit predict` (texts sorted by length, batched, inference mode).  Outputs must be equal.

Prints real (non-padding) tokens per second, sentences per second and the ratios.

    .venv/bin/python bench/bench_ner.py            # full run (~10 minutes on 2 cores)
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


def default_data(max_train: int):
    from nlpfit.config import RunConfig
    from nlpfit.run import resolve
    from nlpfit.tasks import make_task

    cfg = RunConfig(task="ner", task_options={"label_column": "ner_tags"}, output="unused")
    task = make_task(cfg)
    resolve(cfg, task)
    raw = task.load_data()
    if max_train:
        raw["train"] = raw["train"].select(range(max_train))
    return cfg, task, raw


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

    def counting_collator(features):
        batch = collator(features)
        padded[0] += batch["input_ids"].numel()
        return batch

    model = AutoModelForTokenClassification.from_pretrained(
        model_path, id2label=dict(enumerate(labels)), label2id=label2id)
    args = TrainingArguments(out, learning_rate=5e-5, num_train_epochs=1, per_device_train_batch_size=16,
                             weight_decay=0.01, eval_strategy="no", save_strategy="no", report_to="none",
                             disable_tqdm=True, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=counting_collator,
                      processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    real = sum(len(x) for x in train["input_ids"])
    return {"seconds": seconds, "tokens": real, "sentences": len(train), "padding": 1 - real / padded[0]}


def nlpfit_epoch(cfg, out: str, max_train: int) -> dict:
    from nlpfit.engines.loop import LengthGroupedBatches, lengths_of
    from nlpfit.run import train

    cfg.output, cfg.epochs, cfg.overwrite, cfg.max_train_samples = out, 1.0, True, max_train
    cfg.task_options = {"label_column": "ner_tags"}
    res = train(cfg)
    m = res["metrics"]["train"]
    return {"seconds": m["runtime_s"], "tokens": m["tokens_per_second"] * m["runtime_s"],
            "sentences": m["samples_per_second"] * m["runtime_s"], "f1": res["metrics"]["eval"]["f1"]}


def predict_both(model_dir: str, texts: list[str]) -> tuple[dict, dict]:
    from transformers import pipeline

    from nlpfit.run import predict

    pipe = pipeline("token-classification", model=model_dir, aggregation_strategy="simple")
    pipe(texts[0])  # warm-up, both sides
    start = time.perf_counter()
    plain = [pipe(t) for t in texts]
    t_plain = time.perf_counter() - start
    list(predict(model_dir, texts[:1], {"aggregation": "simple"}))
    start = time.perf_counter()
    ours = list(predict(model_dir, texts, {"aggregation": "simple"}))
    t_ours = time.perf_counter() - start
    same = all([(e["entity_group"], e["start"], e["end"]) for e in p] ==
               [(e["entity_group"], e["start"], e["end"]) for e in o["entities"]] for p, o in zip(plain, ours))
    tokens = sum(len(x) for x in pipe.tokenizer(texts)["input_ids"])
    return ({"seconds": t_plain, "tokens": tokens, "sentences": len(texts)},
            {"seconds": t_ours, "tokens": tokens, "sentences": len(texts), "same_entities": same})


def row(name: str, r: dict) -> str:
    return f"| {name} | {r['tokens'] / r['seconds']:,.0f} | {r['sentences'] / r['seconds']:,.1f} | {r['seconds']:.1f} |"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    max_train = 400 if args.quick else 0
    cfg, task, raw = default_data(max_train)
    texts = [" ".join(t) for split in ("validation", "test") for t in raw[split]["tokens"]]
    if args.quick:
        texts = texts[:200]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; train {len(raw['train'])} sentences, "
          f"predict {len(texts)} texts", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        from nlpfit.models import packaged_minilm

        plain = plain_trainer_epoch(packaged_minilm(), raw, task.labels, f"{tmp}/plain")
        ours = nlpfit_epoch(cfg, f"{tmp}/ours", max_train)
        p_plain, p_ours = predict_both(f"{tmp}/ours", texts)
    print()
    print("| one epoch of training | real tokens/s | sentences/s | seconds |")
    print("|---|---|---|---|")
    print(row("transformers Trainer, course recipe (random order)", plain))
    print(row("nlpfit accelerate engine (length-grouped)", ours))
    print(f"| **ratio** | **{(ours['tokens'] / ours['seconds']) / (plain['tokens'] / plain['seconds']):.2f}x** | "
          f"**{(ours['sentences'] / ours['seconds']) / (plain['sentences'] / plain['seconds']):.2f}x** | |")
    print(f"\npadding in the plain recipe's batches: {plain['padding']:.1%}; validation F1 after this epoch "
          f"(nlpfit): {ours['f1']:.3f}")
    print()
    print("| prediction | real tokens/s | sentences/s | seconds |")
    print("|---|---|---|---|")
    print(row("transformers pipeline, one text per call", p_plain))
    print(row("nlpfit predict (sorted, batched)", p_ours))
    print(f"| **ratio** | **{p_plain['seconds'] / p_ours['seconds']:.2f}x** | "
          f"**{p_plain['seconds'] / p_ours['seconds']:.2f}x** | |")
    print(f"\nsame entities (type, start, end) from both: {p_ours['same_entities']}")


if __name__ == "__main__":
    main()
