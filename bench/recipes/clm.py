"""Causal LM from scratch: the course's CodeParrot Trainer set-up against `nlpfit train clm`, and
pipeline("text-generation") per prompt against `nlpfit predict`, on Python files installed here.

Data: the first files of nlpfit's offline default corpus (the standard library and installed
packages, kept when they mention pandas, sklearn, matplotlib or seaborn, as the course filters
codeparrot), written once to a JSON Lines file that both recipes read, split by nlpfit's routing.
Tokenizer: a byte-level BPE trained on the training files with nlpfit's trainer (what `nlpfit
tokenizer train` and `nlpfit train clm` without --tokenizer use), given to both.

Training: the course's recipe as it writes it (tokenize with truncation, return_overflowing_tokens
and return_length, keeping only blocks of context_length 128; a GPT-2 config with the tokenizer's
vocabulary, n_ctx 128 and its bos/eos ids, GPT2LMHeadModel from it; tokenizer.pad_token = eos;
DataCollatorForLanguageModeling(mlm=False); Trainer with learning rate 5e-4, weight decay 0.1,
cosine schedule with warmup) in fp32 and with bf16=True, against `nlpfit train clm` with the same
tokenizer, blocks, model size, batch, schedule and steps (fp32, --mixed-precision bf16).  Where this
departs from the course: GPT2Config() rather than AutoConfig.from_pretrained("gpt2") (no hub here;
the same defaults), a small model (4 layers of 256) and batch, a few steps (max_steps), no gradient
accumulation, warmup as 5% of the steps, no fp16 (a CPU), no push_to_hub.  Both models are drawn
from seed 42; nlpfit's computes GPT-2's activation (gelu_new) in one kernel (gelu_pytorch_tanh, the
same function), and its process keeps freed memory for reuse (nlpfit.allocator), as nlpfit does for
every run.

Quality beside the speed: the validation loss and perplexity after the same steps on the same
blocks (Trainer.evaluate() for the plain recipe, nlpfit's run for nlpfit) and the training loss, all as
the mean over the predicted tokens (the Trainer's figures rescaled: see PER_TOKEN).

Evaluation: Trainer.evaluate() on the validation blocks against nlpfit's evaluation loop (its token
losses), one trained model, best of `repeat`.

Prediction: greedy completions of 32 tokens of the first lines of validation files, the pipeline
on one prompt at a time against `nlpfit predict` (batched, left-padded); the quality figure is the
share of completions equal to the pipeline's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from common import Row, StepClock, best_of, device_precisions, nlpfit_train, nlpfit_training_row

CONTEXT = 128
MODEL = {"n_layer": 4, "n_embd": 256, "n_head": 4}
NEW_TOKENS = 32
#: Trainer divides the summed token loss by its count of label tokens, which includes the first position
#: of each block (never predicted): its losses are (n-1)/n of the mean over predicted tokens.  Its figures
#: are multiplied by this to be read beside nlpfit's (the mean over the tokens predicted).
PER_TOKEN = CONTEXT / (CONTEXT - 1)


def settings(quick: bool) -> dict:
    return {"files": 80, "vocab": 8000, "steps": 16, "batch": 16, "eval_files": 4, "prompts": 16} if quick else \
        {"files": 400, "vocab": 16000, "steps": 40, "batch": 32, "eval_files": 20, "prompts": 64}


def make_data(tmp: Path, s: dict):
    """(task reading the JSON Lines file, its raw splits, tokenizer folder, data flags)."""
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task
    from nlpfit.tokenizer_training import train_bpe

    tmp.mkdir(parents=True, exist_ok=True)
    source = make_task(resolve(default_config("clm", output="unused")))
    data = tmp / "code.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for doc in source.corpus().documents(None, s["files"]):
            f.write(json.dumps({"content": doc["content"], "path": doc["path"]}) + "\n")
    flags = ["--data", str(data), "--filter-keywords", "", "--max-eval-samples", str(s["eval_files"])]
    task = make_task(resolve(default_config("clm", output="unused", data=[str(data)], max_eval_samples=s["eval_files"],
                                            task_options={"filter_keywords": ""})))
    raw, _ = task.load_data()
    raw["validation"] = raw["validation"].select(range(min(s["eval_files"], len(raw["validation"]))))
    tokenizer = train_bpe((row["content"] for row in raw["train"]), s["vocab"])
    tokenizer.save_pretrained(tmp / "tokenizer")
    return task, raw, str(tmp / "tokenizer"), flags


def course_tokenize(tokenizer, context_length: int):
    """The course's tokenize(element), as the course writes it: each file cut into blocks of
    context_length tokens (truncation with overflowing tokens), only the full blocks kept."""

    def tokenize(element):
        outputs = tokenizer(element["content"], truncation=True, max_length=context_length,
                            return_overflowing_tokens=True, return_length=True)
        input_batch = []
        for length, input_ids in zip(outputs["length"], outputs["input_ids"]):
            if length == context_length:
                input_batch.append(input_ids)
        return {"input_ids": input_batch}

    return tokenize


def plain_model(tokenizer, as_nlpfit_builds_it: bool = False):
    """GPT2LMHeadModel from the course's GPT-2 config, drawn after set_seed(42) as nlpfit draws it
    (`as_nlpfit_builds_it`: with the activation in one kernel, `clm.one_kernel_gelu`)."""
    from transformers import GPT2Config, GPT2LMHeadModel, set_seed

    from nlpfit.tasks.clm import one_kernel_gelu

    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_ctx=CONTEXT, bos_token_id=bos,
                        eos_token_id=tokenizer.eos_token_id, **MODEL)
    if as_nlpfit_builds_it:
        one_kernel_gelu(config)
    set_seed(42)
    return GPT2LMHeadModel(config)


def plain_training(tokenizer_dir: str, raw, out: str, steps: int, batch_size: int, bf16: bool) -> dict:
    """The course's CodeParrot recipe, written as the course writes it."""
    import torch
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenize = course_tokenize(tokenizer, CONTEXT)
    tokenized_datasets = {split: raw[split].map(tokenize, batched=True, remove_columns=raw[split].column_names)
                          for split in ("train", "validation")}
    model = plain_model(tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    data_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    clock = StepClock()  # the bench's: real tokens of each batch, end of each step
    args = TrainingArguments(out, per_device_train_batch_size=batch_size, per_device_eval_batch_size=32,
                             eval_strategy="no", logging_steps=steps, gradient_accumulation_steps=1, max_steps=steps,
                             weight_decay=0.1, warmup_steps=round(0.05 * steps), lr_scheduler_type="cosine",
                             learning_rate=5e-4, save_strategy="no", bf16=bf16, report_to="none", disable_tqdm=True,
                             seed=42, use_cpu=not torch.cuda.is_available())  # bf16 on a CPU needs use_cpu
    trainer = Trainer(model=model, processing_class=tokenizer, args=args, data_collator=clock.counting(data_collator),
                      train_dataset=tokenized_datasets["train"], eval_dataset=tokenized_datasets["validation"],
                      callbacks=[clock.callback()])
    train = trainer.train()
    trainer.data_collator = data_collator
    eval_loss = trainer.evaluate()["eval_loss"]
    return {**clock.steady(), "train_loss": train.training_loss * PER_TOKEN, "eval_loss": eval_loss * PER_TOKEN,
            "trainer": trainer}


def quality(eval_loss: float, train_loss: float) -> str:
    return f"val ppl {math.exp(eval_loss):,.1f} (loss {eval_loss:.4f}), train loss {train_loss:.4f}"


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    s = settings(quick)
    task, raw, tokenizer_dir, flags = make_data(tmp, s)
    rows, plain_rate = [], {}
    precisions = ["no", *device_precisions()]
    for precision in precisions:
        plain = plain_training(tokenizer_dir, raw, str(tmp / f"plain-{precision}"), s["steps"], s["batch"],
                               precision == "bf16")
        plain_rate[precision] = plain["rate"]
        rows.append(Row("clm", "training", "Trainer, course recipe" + (" bf16=True" if precision != "no" else ""),
                        plain_rate[precision], "real tokens/s", quality(plain["eval_loss"], plain["train_loss"]),
                        plain["seconds"]))
        if precision == "no":
            trainer = plain["trainer"]
    for precision in precisions:
        m = nlpfit_train("clm", tmp / f"ours-{precision}", *flags, "--tokenizer", tokenizer_dir,
                         "--n-layer", MODEL["n_layer"], "--n-embd", MODEL["n_embd"], "--n-head", MODEL["n_head"],
                         "--context-length", CONTEXT, "--max-steps", s["steps"], "--batch-size", s["batch"],
                         "--lr", "5e-4", "--weight-decay", "0.1", "--scheduler", "cosine", "--warmup-ratio", "0.05",
                         "--eval-batch-size", 32, "--logging-steps", 1, "--mixed-precision", precision)
        rows.append(nlpfit_training_row("clm", m, precision, quality(m["eval"]["loss"], m["train"]["loss"]),
                                        plain_rate[precision]))
    rows += evaluation_rows(trainer, raw, tmp / "ours-no", repeat)
    rows += generation_rows(task, raw, tmp / "ours-no", s["prompts"], repeat)
    return rows


def evaluation_rows(trainer, raw, out: Path, repeat: int) -> list[Row]:
    """Trainer.evaluate() against nlpfit's evaluation loop, on nlpfit's trained model and the same blocks."""
    from nlpfit.engines.loop import evaluate
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task

    task = make_task(load_run(str(out))[0])
    model, tokenizer = task.load_trained(str(out))
    features, _ = task.preprocess({"validation": raw["validation"]}, tokenizer, model.config, task.Facts(),
                                  training=False)
    blocks = features["validation"]
    trainer.model = trainer.model_wrapped = model
    seconds, result = best_of(repeat, lambda: trainer.evaluate())
    rows = [Row("clm", "evaluation", "Trainer.evaluate()", len(blocks) / seconds, "blocks/s",
                f"ppl {math.exp(result['eval_loss'] * PER_TOKEN):,.2f}", seconds)]
    for precision in ("fp32", *device_precisions()):
        seconds, ev = best_of(repeat, lambda: evaluate(task, model, tokenizer, blocks, None, None, 32,
                                                         precision=precision))
        rows.append(Row("clm", "evaluation", "nlpfit evaluate" + (f" --precision {precision}" if precision != "fp32"
                                                                  else ""), len(blocks) / seconds, "blocks/s",
                        f"ppl {ev.metrics['perplexity']:,.2f}", seconds))
    return rows


def generation_rows(task, raw, out: Path, n_prompts: int, repeat: int) -> list[Row]:
    from transformers import pipeline

    from nlpfit.run import load_run, predict_options
    from nlpfit.tasks import make_task

    prompts = task.example_inputs(raw["validation"], n_prompts)
    pipe = pipeline("text-generation", model=str(out))
    pad = pipe.tokenizer.eos_token_id

    def plain():
        return [pipe(p, max_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False,
                     pad_token_id=pad)[0]["generated_text"] for p in prompts]

    seconds, reference = best_of(repeat, plain)
    rows = [Row("clm", "prediction", "pipeline(\"text-generation\"), greedy, one prompt per call",
                len(prompts) / seconds, "prompts/s", seconds=seconds)]
    ours_task = make_task(load_run(str(out))[0])
    predictor = ours_task.load_predictor(str(out))
    for precision in ("fp32", *device_precisions()):
        opts = predict_options(ours_task, {"precision": precision, "batch_size": 16, "max_new_tokens": NEW_TOKENS})
        seconds, ours = best_of(repeat, lambda: list(ours_task.predict_with(predictor, prompts, opts)))
        same = sum(o["completions"] == [r] for o, r in zip(ours, reference)) / len(prompts)
        rows.append(Row("clm", "prediction", "nlpfit predict" + (f" --precision {precision}" if precision != "fp32"
                                                                 else ""), len(prompts) / seconds, "prompts/s",
                        f"same completions {same:.1%}", seconds))
    return rows


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    """nlpfit's causal-LM training steps (its loss, fused AdamW), one evaluation pass and one batched
    greedy generation pass, fp32 and bf16 autocast."""
    from transformers import AutoTokenizer

    import functools

    from profiling import Runs, training_step

    from nlpfit.engines.loop import evaluate, make_collate
    from nlpfit.tasks.clm import greedy_completions

    s = settings(quick)
    task, raw, tokenizer_dir, _ = make_data(tmp, s)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.pad_token = tokenizer.eos_token
    model = plain_model(tokenizer)
    features, _ = task.preprocess(raw, tokenizer, model.config, task.Facts(), training=True)
    collate = make_collate(task.collator(tokenizer, model), model)
    loss_fn = task.loss_function(tokenizer)
    steps = 4 if quick else 10
    train = features["train"]
    batches = [collate([train[i] for i in range(k * s["batch"], (k + 1) * s["batch"])]) for k in range(steps + 1)]
    prompts = task.example_inputs(raw["validation"], 16)

    def generate(model, precision: str) -> None:
        model.eval()
        list(greedy_completions(model, tokenizer, prompts, [NEW_TOKENS] * len(prompts), 16, precision))

    runs = Runs()
    for precision in ("fp32", "bf16"):
        model = plain_model(tokenizer, as_nlpfit_builds_it=True)
        runs.steps(f"clm training, {steps} steps of {s['batch']} blocks, {precision}",
                   training_step(model, loss_fn, 0.1, 5e-4, precision), batches)
        runs.add(f"clm evaluation, {len(features['validation'])} blocks, {precision}",
                 functools.partial(evaluate, task, model, tokenizer, features["validation"], None, None, 32,
                                   precision=precision))
        runs.add(f"clm generation, {len(prompts)} prompts x {NEW_TOKENS} tokens, batched, {precision}",
                 functools.partial(generate, model, precision))
    return runs.profiles()
