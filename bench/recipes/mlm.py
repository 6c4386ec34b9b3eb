"""Masked-LM domain adaptation: the course's Trainer set-up against `nlpfit train mlm`, and
pipeline("fill-mask") per text against `nlpfit predict`, on the packaged MiniLM and the prose of the
CPython documentation (nlpfit's offline default data).

Training: the course's recipe as it writes it (tokenize_function keeping word ids, group_texts
into blocks of chunk_size 128, DataCollatorForLanguageModeling(mlm_probability=0.15), Trainer with
learning rate 2e-5 and weight decay 0.01), in fp32 and with bf16=True, against `nlpfit train mlm`
with the same blocks, batch, learning rate and steps (fp32, --mixed-precision bf16).  The model is
AutoModelForMaskedLM on the packaged MiniLM, which has no masked-LM head: both get a new one, drawn
from the same seed, its decoder tied to the input embeddings.  Where this departs from the course:
no fp16 (a CPU), a smaller batch and a few steps (max_steps) so that it runs here, no push_to_hub.

Quality beside the speed: the evaluation loss and perplexity, after the same steps, on the same
evaluation blocks masked once with fixed seeds (nlpfit's validation blocks; the course's
insert_random_mask does the same with default_data_collator), the Trainer's through
Trainer.evaluate() as the course computes perplexity, nlpfit's from its run.

Evaluation: Trainer.evaluate() on those blocks against nlpfit's evaluation loop (the vocabulary
projection only at masked positions), one trained model, best of `repeat`.

Prediction: pipeline("fill-mask") on one text at a time against `nlpfit predict` (sorted, batched;
the vocabulary projection only at the masks), on evaluation texts with a [MASK] word; the quality
figure is the share of texts whose top-5 tokens are the plain pipeline's, in order.
"""

from __future__ import annotations

import math
from pathlib import Path

from common import Row, StepClock, best_of, device_precisions, nlpfit_train, nlpfit_training_row

CHUNK = 128


def settings(quick: bool) -> dict:
    return {"steps": 12, "batch": 8, "eval_blocks": 16, "texts": 24} if quick else \
        {"steps": 24, "batch": 16, "eval_blocks": 128, "texts": 150}


def default_data(eval_blocks: int):
    """nlpfit's default task, its raw text splits, and its masked validation blocks."""
    from transformers import AutoTokenizer

    from nlpfit.models import packaged_minilm
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task

    cfg = resolve(default_config("mlm", output="unused", task_options={"test_size": eval_blocks}))
    task = make_task(cfg)
    raw, facts = task.load_data()
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm())
    from transformers import AutoConfig

    features, _ = task.preprocess({"validation": raw["validation"]}, tokenizer, AutoConfig.from_pretrained(
        packaged_minilm()), facts, training=False)
    return task, raw, features["validation"]


def plain_model(model_path: str):
    """AutoModelForMaskedLM as the course loads it; the new head drawn after set_seed(42), as nlpfit draws it."""
    from transformers import AutoModelForMaskedLM, set_seed

    set_seed(42)
    model = AutoModelForMaskedLM.from_pretrained(model_path)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    return model


def plain_training(model_path: str, raw, eval_blocks, out: str, steps: int, batch_size: int, bf16: bool) -> dict:
    """The course's masked-LM recipe, written as the course writes it."""
    import torch
    from transformers import (AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments,
                              default_data_collator)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = plain_model(model_path)

    def tokenize_function(examples):
        result = tokenizer(examples["text"])
        if tokenizer.is_fast:
            result["word_ids"] = [result.word_ids(i) for i in range(len(result["input_ids"]))]
        return result

    chunk_size = CHUNK

    def group_texts(examples):
        concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        total_length = (total_length // chunk_size) * chunk_size
        result = {k: [t[i: i + chunk_size] for i in range(0, total_length, chunk_size)]
                  for k, t in concatenated_examples.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    tokenized_datasets = raw["train"].map(tokenize_function, batched=True, remove_columns=["text"])
    lm_dataset = tokenized_datasets.map(group_texts, batched=True)
    data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    clock = StepClock()  # the bench's: real tokens of each batch, end of each step
    eval_dataset = eval_blocks.remove_columns([c for c in eval_blocks.column_names if c == "word_ids"])
    training_args = TrainingArguments(out, eval_strategy="no", learning_rate=2e-5, weight_decay=0.01,
                                      per_device_train_batch_size=batch_size, per_device_eval_batch_size=32,
                                      max_steps=steps, bf16=bf16, logging_steps=steps, save_strategy="no",
                                      report_to="none", disable_tqdm=True, seed=42,
                                      use_cpu=not torch.cuda.is_available())  # bf16 on a CPU needs use_cpu
    trainer = Trainer(model=model, args=training_args, train_dataset=lm_dataset,
                      data_collator=clock.counting(data_collator), processing_class=tokenizer,
                      callbacks=[clock.callback()])
    train = trainer.train()
    trainer.data_collator = default_data_collator  # the evaluation blocks are masked already (insert_random_mask)
    eval_results = trainer.evaluate(eval_dataset)
    return {**clock.steady(), "train_loss": train.training_loss,
            "eval_loss": eval_results["eval_loss"], "trainer": trainer}


def quality(eval_loss: float, train_loss: float) -> str:
    return f"eval ppl {math.exp(eval_loss):,.1f} (loss {eval_loss:.4f}), train loss {train_loss:.4f}"


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    from nlpfit.models import packaged_minilm

    tmp.mkdir(parents=True, exist_ok=True)
    s = settings(quick)
    task, raw, eval_blocks = default_data(s["eval_blocks"])
    path = packaged_minilm()
    rows, plain_rate = [], {}
    for precision in ["no", *device_precisions()]:
        plain = plain_training(path, raw, eval_blocks, str(tmp / f"plain-{precision}"), s["steps"], s["batch"],
                               precision == "bf16")
        plain_rate[precision] = plain["rate"]
        rows.append(Row("mlm", "training", "Trainer, course recipe" + (" bf16=True" if precision != "no" else ""),
                        plain_rate[precision], "real tokens/s", quality(plain["eval_loss"], plain["train_loss"]),
                        plain["seconds"]))
        trainer = plain["trainer"]
    for precision in ["no", *device_precisions()]:
        out = tmp / f"ours-{precision}"
        m = nlpfit_train("mlm", out, "--max-steps", s["steps"], "--batch-size", s["batch"], "--lr", "2e-5",
                         "--weight-decay", "0.01", "--test-size", s["eval_blocks"], "--eval-batch-size", 32,
                         "--no-eval-before", "--logging-steps", 1, "--mixed-precision", precision)
        rows.append(nlpfit_training_row("mlm", m, precision, quality(m["eval"]["loss"], m["train"]["loss"]),
                                        plain_rate[precision]))
    rows += evaluation_rows(task, trainer, tmp / "ours-no", eval_blocks, repeat)
    rows += prediction_rows(task, raw, tmp / "ours-no", s["texts"], repeat)
    return rows


def evaluation_rows(task, trainer, out: Path, eval_blocks, repeat: int) -> list[Row]:
    """Trainer.evaluate() against nlpfit's evaluation loop, on nlpfit's trained model and the same blocks."""
    from transformers import AutoModelForMaskedLM

    from nlpfit.engines.loop import evaluate

    model = AutoModelForMaskedLM.from_pretrained(out)
    trainer.model = trainer.model_wrapped = model
    plain_eval = eval_blocks.remove_columns(["word_ids"])
    seconds, result = best_of(repeat, lambda: trainer.evaluate(plain_eval))
    n = len(eval_blocks)
    rows = [Row("mlm", "evaluation", "Trainer.evaluate()", n / seconds, "blocks/s",
                f"ppl {math.exp(result['eval_loss']):,.2f}", seconds)]
    tokenizer = trainer.processing_class
    for precision in ("fp32", *device_precisions()):
        def run():
            return evaluate(task, model, tokenizer, eval_blocks, None, None, 32, precision=precision).metrics
        seconds, metrics = best_of(repeat, run)
        rows.append(Row("mlm", "evaluation", "nlpfit evaluate" + (f" --precision {precision}" if precision != "fp32"
                                                                  else ""), n / seconds, "blocks/s",
                        f"ppl {metrics['perplexity']:,.2f}", seconds))
    return rows


def prediction_rows(task, raw, out: Path, n_texts: int, repeat: int) -> list[Row]:
    from transformers import pipeline

    from nlpfit.run import load_run, predict_options
    from nlpfit.tasks import make_task

    texts = task.example_inputs(raw["validation"], n_texts)
    pipe = pipeline("fill-mask", model=str(out))
    seconds, plain = best_of(repeat, lambda: [pipe(t) for t in texts])
    top = [[c["token_str"] for c in p] for p in plain]
    rows = [Row("mlm", "prediction", "pipeline(\"fill-mask\"), one text per call", len(texts) / seconds, "texts/s",
                seconds=seconds)]
    ours_task = make_task(load_run(str(out))[0])
    predictor = ours_task.load_predictor(str(out))
    for precision in ("fp32", *device_precisions()):
        opts = predict_options(ours_task, {"precision": precision, "batch_size": 32})
        seconds, ours = best_of(repeat, lambda: list(ours_task.predict_with(predictor, texts, opts)))
        same = sum([c["token"] for c in o["predictions"]] == tp for o, tp in zip(ours, top)) / len(texts)
        rows.append(Row("mlm", "prediction", "nlpfit predict" + (f" --precision {precision}" if precision != "fp32"
                                                                 else ""), len(texts) / seconds, "texts/s",
                        f"same top-5 {same:.1%}", seconds))
    return rows


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    """nlpfit's masked-LM training steps (loss on the masked positions, fused AdamW) and one evaluation
    pass, fp32 and bf16 autocast, on the default data's blocks."""
    from transformers import AutoTokenizer

    import functools

    from profiling import Runs, training_step

    from nlpfit.engines.loop import evaluate, make_collate
    from nlpfit.models import packaged_minilm
    from nlpfit.tasks.mlm import masked_lm_loss

    s = settings(quick)
    task, raw, eval_blocks = default_data(s["eval_blocks"])
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm())
    model = plain_model(packaged_minilm())
    train, _ = task.preprocess({"train": raw["train"]}, tokenizer, model.config, task.Facts(), training=True)
    collate = make_collate(task.collator(tokenizer, model), model)
    steps = 4 if quick else 10
    batches = [collate([train["train"][i] for i in range(k * s["batch"], (k + 1) * s["batch"])])
               for k in range(steps + 1)]
    runs = Runs()
    for precision in ("fp32", "bf16"):
        model = plain_model(packaged_minilm())
        runs.steps(f"mlm training, {steps} steps of {s['batch']} blocks, {precision}",
                   training_step(model, masked_lm_loss, 0.01, 2e-5, precision), batches)
        runs.add(f"mlm evaluation, {len(eval_blocks)} blocks, {precision}",
                 functools.partial(evaluate, task, model, tokenizer, eval_blocks, None, None, 32, precision=precision))
    return runs.profiles()
