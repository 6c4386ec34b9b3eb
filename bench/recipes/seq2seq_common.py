"""What the translation and summarization sections share: one model trained by `nlpfit train` on the
task's offline default, then evaluated and used for prediction both ways on its validation split.

Training: the course's `preprocess_function` and `Seq2SeqTrainer.train()` on a model of the run's
architecture and tokenizer, initialised afresh, with the run's steps, batch size, learning rate, warmup
and weight decay, against `nlpfit train`'s own figures (its training time, evaluations apart; fp32 and
--mixed-precision bf16): real (non-padding) source tokens per second, the mean training loss beside.

Evaluation, plain: the course's recipe, `Seq2SeqTrainer(model, Seq2SeqTrainingArguments(
predict_with_generate=True, per_device_eval_batch_size=64, ...), data_collator=DataCollatorForSeq2Seq,
compute_metrics=compute_metrics).evaluate(max_length=...)` on the course's tokenization
(`preprocess_function` mapped over the split); `max_length` is nlpfit's generation limit plus the
decoder's start token, so both generate under the same limit.  bf16: `bf16=True` in the arguments (the
course's `fp16=True` on hardware with bfloat16).  nlpfit: `engines.loop.evaluate` (the task's eval_step,
batches sorted by length, inference mode, `precision="bf16"` autocast).  Both time the evaluation pass
with its metric computation; tokenization and model loading are timed apart (not in the figure).

Prediction, plain: transformers 5 has no translation, summarization or text2text-generation
pipeline, so one `model.generate` per text (the tokenizer's output for that text alone); nlpfit:
`task.predict_with` (inputs sorted by length, batched, inference mode), fp32 and bf16, with the share of
outputs identical to the plain ones.
"""

from __future__ import annotations

import time
from pathlib import Path

from common import Row, StepClock, best_of, device_precisions, nlpfit_train, nlpfit_training_row


def train(task_name: str, out: Path, steps: int, *args: str) -> dict:
    """`nlpfit train TASK` on its offline default (the from-scratch Marian-style model), `steps` steps, a
    log line each (`nlpfit_steady`)."""
    return nlpfit_train(task_name, out, "--max-steps", str(steps), "--max-eval-samples", "16", "--logging-steps", "1",
                        *args)


def load(out: Path, limit: int):
    """(task, model, tokenizer, validation pairs, seconds to load the model): the data the run held out."""
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task

    cfg, _ = load_run(str(out))
    task = make_task(cfg)
    raw, _ = task.load_data(trained=task.trained_facts(str(out)))
    val = raw["validation"]
    if limit:
        val = val.select(range(min(limit, len(val))))
    start = time.perf_counter()
    model, tokenizer = task.load_trained(str(out))
    return task, model, tokenizer, val, time.perf_counter() - start


def plain_evaluate(task, model, tokenizer, val, compute_metrics, max_source: int, max_target: int, repeat: int,
                   tmp: Path, bf16: bool):
    """(best seconds, metrics) of the course's Seq2SeqTrainer.evaluate."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    def preprocess_function(examples):
        model_inputs = tokenizer(examples["source"], text_target=examples["target"], max_length=max_source,
                                 truncation=True)
        if max_target != max_source:  # the summarization chapter truncates its targets apart
            model_inputs["labels"] = tokenizer(text_target=examples["target"], max_length=max_target,
                                               truncation=True)["input_ids"]
        return model_inputs

    tokenized = val.map(preprocess_function, batched=True, remove_columns=val.column_names)
    data_collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    args = Seq2SeqTrainingArguments(str(tmp), per_device_eval_batch_size=64, predict_with_generate=True, bf16=bf16,
                                    report_to="none", disable_tqdm=True, use_cpu=not _cuda())
    trainer = Seq2SeqTrainer(model, args, eval_dataset=tokenized, data_collator=data_collator,
                             processing_class=tokenizer, compute_metrics=compute_metrics)
    max_length = task.max_new_tokens() + 1
    return best_of(repeat, lambda: trainer.evaluate(max_length=max_length))


def ours_evaluate(task, model, tokenizer, val, repeat: int, precision: str):
    """(best seconds, metrics) of nlpfit's evaluation loop on the same split."""
    from nlpfit.engines.loop import evaluate
    from nlpfit.tasks.base import Facts

    features, facts = task.preprocess({"validation": val}, tokenizer, model.config, Facts(), training=False)
    seconds, result = best_of(repeat, lambda: evaluate(task, model, tokenizer, features["validation"], val, facts,
                                                       task.cfg.eval_batch_size, precision=precision))
    return seconds, result.metrics


def plain_predict(task, model, tokenizer, texts: list[str]) -> list[str]:
    """One `model.generate` per text, as a user without a pipeline writes it."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, max_length=task.opts.max_source_length, truncation=True,
                               return_tensors="pt").to(model.device)
            out.append(tokenizer.decode(model.generate(**inputs)[0], skip_special_tokens=True).strip())
    return out


def ours_predict(task, model, tokenizer, texts: list[str], precision: str) -> list[str]:
    popts = task.PredictOptions(batch_size=task.cfg.eval_batch_size, precision=precision)
    return [r[task.output_key] for r in task.predict_with((model, tokenizer), texts, popts)]


def plain_training(out: Path, train_split, tmp: Path, bf16: bool = False) -> dict:
    """The course's training: its preprocess_function over the run's training pairs, a model of the
    run's architecture initialised afresh (seed 42) with the run's tokenizer, DataCollatorForSeq2Seq,
    Seq2SeqTrainer.train() with the run's steps, batch size, learning rate, warmup and weight decay.
    Real (non-padding) source tokens are counted from the batches, as nlpfit counts them (`StepClock`)."""
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                              Seq2SeqTrainingArguments, set_seed)

    from nlpfit.run import load_run
    from nlpfit.tasks import make_task

    cfg, _ = load_run(str(out))
    task = make_task(cfg)
    tokenizer = task.load_trained(str(out))[1]
    o = task.opts

    def preprocess_function(examples):
        return tokenizer(examples["source"], text_target=examples["target"], max_length=o.max_source_length,
                         truncation=True)

    tokenized = train_split.map(preprocess_function, batched=True, remove_columns=train_split.column_names)
    set_seed(42)
    model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(str(out)))
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    clock = StepClock()  # the bench's: real tokens of each batch, end of each step

    args = Seq2SeqTrainingArguments(str(tmp / ("plain-train-bf16" if bf16 else "plain-train")), learning_rate=cfg.lr,
                                    max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                                    warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
                                    eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
                                    seed=42, bf16=bf16, use_cpu=not _cuda())
    trainer = Seq2SeqTrainer(model, args, train_dataset=tokenized, data_collator=clock.counting(collator),
                             processing_class=tokenizer, callbacks=[clock.callback()])
    result = trainer.train()
    return {**clock.steady(), "loss": result.training_loss}


def training_rows(name: str, out: Path, metrics: dict, steps: int, train_args: tuple, tmp: Path) -> list[Row]:
    """Training, real source tokens per second: the course's Seq2SeqTrainer against nlpfit's run (and
    its bf16 twin), the mean training loss of the same steps beside each."""
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task

    cfg, _ = load_run(str(out))
    task = make_task(cfg)
    raw, _ = task.load_data(trained=task.trained_facts(str(out)))
    plain = plain_training(out, raw["train"], tmp)
    rows = [Row(name, "training", "Seq2SeqTrainer, course recipe (random order)", plain["rate"],
                "real tokens/s", f"train loss {plain['loss']:.3f}", plain["seconds"], f"{steps} steps")]
    runs = [("no", metrics)]
    for precision in device_precisions():
        runs.append((precision, train(name, tmp / f"model-{precision}", steps, "--mixed-precision", precision,
                                      *train_args)))
    for precision, m in runs:
        rows.append(nlpfit_training_row(name, m, precision, f"train loss {m['train']['loss']:.3f}"))
    return rows


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def section(name: str, steps: int, limit: int, n_predict: int, repeat: int, tmp: Path, compute_metrics_for,
            quality, train_args: tuple = ()) -> list[Row]:
    """The rows of one task: evaluation (plain fp32 and bf16, nlpfit fp32 and bf16) and prediction."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "model"
    metrics = train(name, out, steps, *train_args)
    rows = training_rows(name, out, metrics, steps, train_args, tmp)
    task, model, tokenizer, val, load_s = load(out, limit)
    device = "cuda" if _cuda() else "cpu"
    model.to(device)
    o = task.opts
    n = len(val)
    for precision in ["fp32", *device_precisions()]:
        seconds, metrics = plain_evaluate(task, model, tokenizer, val, compute_metrics_for(tokenizer),
                                          o.max_source_length, o.max_target_length, repeat, tmp / "trainer",
                                          precision == "bf16")
        rows.append(Row(name, "evaluation", "Seq2SeqTrainer.evaluate, course recipe"
                        + (" (bf16=True)" if precision == "bf16" else ""), n / seconds, "examples/s",
                        quality(metrics, "eval_"), seconds, f"model loaded apart in {load_s:.2f} s"
                        if precision == "fp32" else ""))
    for precision in ["fp32", *device_precisions()]:
        seconds, metrics = ours_evaluate(task, model, tokenizer, val, repeat, precision)
        rows.append(Row(name, "evaluation", "nlpfit evaluate" + (" --precision bf16" if precision == "bf16" else ""),
                        n / seconds, "examples/s", quality(metrics, ""), seconds))
    texts = list(val["source"][:n_predict])
    seconds, reference = best_of(repeat, lambda: plain_predict(task, model, tokenizer, texts))
    rows.append(Row(name, "prediction", "model.generate, one text per call (no pipeline in transformers 5)",
                    len(texts) / seconds, "texts/s", seconds=seconds))
    for precision in ["fp32", *device_precisions()]:
        seconds, got = best_of(repeat, lambda: ours_predict(task, model, tokenizer, texts, precision))
        same = sum(a == b for a, b in zip(got, reference)) / max(len(texts), 1)
        rows.append(Row(name, "prediction", "nlpfit predict" + (" --precision bf16" if precision == "bf16" else ""),
                        len(texts) / seconds, "texts/s", f"same outputs {same:.1%}", seconds))
    return rows


def profile_task(name: str, steps: int, limit: int, tmp: Path, train_args: tuple = ()) -> list[tuple[str, object]]:
    """torch.profiler runs of nlpfit's own paths: a few training steps (the engine's way: forward,
    backward, clipping, fused AdamW on length-grouped batches) and one evaluation pass, fp32 and bf16."""
    import functools
    import itertools

    from profiling import Runs, training_step

    from nlpfit.engines.loop import LengthGroupedBatches, evaluate, lengths_of, make_collate
    from nlpfit.tasks.base import Facts

    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "model"
    train(name, out, 2, *train_args)
    task, model, tokenizer, val, _ = load(out, limit)
    features, facts = task.preprocess({"validation": val}, tokenizer, model.config, Facts(), training=False)
    feats = features["validation"]
    collate = make_collate(task.collator(tokenizer, model), model)
    order = LengthGroupedBatches(lengths_of(feats), 16, seed=0).batches()  # repeated if the split is short
    batches = [collate([feats[i] for i in idx]) for idx in itertools.islice(itertools.cycle(order), steps + 1)]
    runs = Runs()
    for precision in ("fp32", "bf16"):
        runs.steps(f"{name} training, {steps} steps, {precision}",
                   training_step(model, lambda m, batch: m(**batch).loss, 0.0, 1e-4, precision), batches)
        runs.add(f"{name} evaluation, {len(val)} examples, {precision}",
                 functools.partial(evaluate, task, model, tokenizer, feats, val, facts, task.cfg.eval_batch_size,
                                   precision=precision))
    return runs.profiles()
