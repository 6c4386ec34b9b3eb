"""Extractive question answering: the course's recipe (chapter 7, "Question answering") against
nlpfit, on a MiniLM model that `nlpfit train qa` fine-tunes first (a few steps in quick mode) on the
offline default data (CPython's docs as a SQuAD-style set).

- evaluation, the whole of it, model loading apart: the course's `preprocess_validation_examples`
  (windows of 384 tokens padded to max_length, stride 128, offsets None outside the context),
  `Trainer.predict` and its `compute_metrics` (n_best 20, max_answer_length 30) against
  `nlpfit evaluate`'s path in-process (its windows, batches sorted by length with dynamic padding,
  inference mode, the vectorised post-processing), fp32 and bf16 autocast.
- post-processing alone (logits + features + questions -> answer texts, the metric apart), on the
  course's features and logits of the validation and test splits: the course's `compute_metrics`
  loop against the path of nlpfit's `QuestionAnswering.compute_metrics` (`predicted_texts`: ids,
  contexts and offsets read from Arrow, top-k over all windows at once); both get the same features
  and logits, and the share of the same answers is the quality figure.  Twice: with the course's
  384/128 windows (the demo set's contexts are short: one window per question), and with windows of
  128 tokens, stride 32, cut by the same `preprocess_validation_examples` and run through the same
  model, so that questions have several windows as SQuAD's long contexts do at 384/128.
- training: the course's `preprocess_training_examples` (windows padded to 384 tokens) and Trainer
  against `nlpfit train qa` (dynamic padding, length-grouped batches, fused AdamW), the same steps,
  batch size and learning rate, real (non-padding) tokens per second, with the validation EM/F1
  of each trained model beside it.
- prediction: transformers 5 has no "question-answering" pipeline; the one nlpfit ships in the model
  folder, `pipeline("question-answering", model=OUT, trust_remote_code=True)`, one question per call,
  against `nlpfit predict`'s batched path (`task.predict_with`), fp32 and bf16.

Departures from the course, and why: the squad metric is nlpfit.metrics.squad's scorer (the
official script's normalisation; `evaluate.load("squad")` needs the Hub), the same for both sides;
the Trainer's evaluation batch size is nlpfit's (64, the course leaves the default 8) so that both
sides run the same batches; the course trains with fp16=True on a GPU, here the plain recipe runs in
fp32 (the reference figures).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from common import Row, StepClock, best_of, device_precisions, nlpfit_train, nlpfit_training_row, timed

n_best = 20
max_answer_length = 30
max_length = 384
stride = 128


def train_settings(quick: bool) -> dict:
    return {"steps": 30, "batch": 8, "lr": 1e-4} if quick else {"steps": 150, "batch": 16, "lr": 1e-4}


def train_model(quick: bool, tmp: Path, precision: str = "no") -> tuple[Path, dict]:
    """`nlpfit train qa` on the offline default: the model folder and its metrics.json."""
    s = train_settings(quick)
    out = tmp / ("model" if precision == "no" else f"model-{precision}")
    metrics = nlpfit_train("qa", out, "--max-steps", str(s["steps"]), "--batch-size", str(s["batch"]),
                           "--lr", str(s["lr"]), "--mixed-precision", precision, "--logging-steps", "1")
    return out, metrics


def course_preprocess_training(tokenizer, max_length=max_length, stride=stride):
    """The course's preprocess_training_examples, with the course's names and arguments."""

    def preprocess_training_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(
            questions,
            examples["context"],
            max_length=max_length,
            truncation="only_second",
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        offset_mapping = inputs.pop("offset_mapping")
        sample_map = inputs.pop("overflow_to_sample_mapping")
        answers = examples["answers"]
        start_positions = []
        end_positions = []
        for i, offset in enumerate(offset_mapping):
            sample_idx = sample_map[i]
            answer = answers[sample_idx]
            if not answer["text"]:
                start_positions.append(0)
                end_positions.append(0)
                continue
            start_char = answer["answer_start"][0]
            end_char = answer["answer_start"][0] + len(answer["text"][0])
            sequence_ids = inputs.sequence_ids(i)
            idx = 0
            while sequence_ids[idx] != 1:
                idx += 1
            context_start = idx
            while sequence_ids[idx] == 1:
                idx += 1
            context_end = idx - 1
            if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
                start_positions.append(0)
                end_positions.append(0)
            else:
                idx = context_start
                while idx <= context_end and offset[idx][0] <= start_char:
                    idx += 1
                start_positions.append(idx - 1)
                idx = context_end
                while idx >= context_start and offset[idx][1] >= end_char:
                    idx -= 1
                end_positions.append(idx + 1)
        inputs["start_positions"] = start_positions
        inputs["end_positions"] = end_positions
        return inputs

    return preprocess_training_examples


def plain_training(quick: bool, raw, tmp: Path, bf16: bool = False) -> dict:
    """The course's training: preprocess_training_examples (windows padded to 384), the Trainer with
    its default collator, the same steps, batch and learning rate as nlpfit's run; real (non-padding)
    tokens counted from the batches' attention masks (`StepClock`).  Returns the steady rate, tokens and
    seconds, and the trained model."""

    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments
    from transformers import default_data_collator

    from nlpfit.models import packaged_minilm

    s = train_settings(quick)
    path = packaged_minilm()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_dataset = raw["train"].map(course_preprocess_training(tokenizer), batched=True,
                                     remove_columns=raw["train"].column_names)
    clock = StepClock()  # the bench's: real tokens of each batch, end of each step

    model = AutoModelForQuestionAnswering.from_pretrained(path)
    args = TrainingArguments(str(tmp / ("plain-train-bf16" if bf16 else "plain-train")), learning_rate=s["lr"],
                             max_steps=s["steps"], per_device_train_batch_size=s["batch"], weight_decay=0.01,
                             eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, seed=42,
                             bf16=bf16, use_cpu=not __import__("torch").cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset,
                      data_collator=clock.counting(default_data_collator), processing_class=tokenizer,
                      callbacks=[clock.callback()])
    trainer.train()
    return {**clock.steady(), "model": model.eval(), "tokenizer": tokenizer}


def course_preprocess(tokenizer, max_length=max_length, stride=stride):
    """The course's preprocess_validation_examples, with the course's names and arguments (the
    window settings as arguments: the post-processing stage also cuts smaller windows)."""

    def preprocess_validation_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(
            questions,
            examples["context"],
            max_length=max_length,
            truncation="only_second",
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        sample_map = inputs.pop("overflow_to_sample_mapping")
        example_ids = []
        for i in range(len(inputs["input_ids"])):
            sample_idx = sample_map[i]
            example_ids.append(examples["id"][sample_idx])
            sequence_ids = inputs.sequence_ids(i)
            offset = inputs["offset_mapping"][i]
            inputs["offset_mapping"][i] = [o if sequence_ids[k] == 1 else None for k, o in enumerate(offset)]
        inputs["example_id"] = example_ids
        return inputs

    return preprocess_validation_examples


def course_answers(start_logits, end_logits, features, examples):
    """The course's compute_metrics loop: id -> predicted text."""
    example_to_features = collections.defaultdict(list)
    for idx, feature in enumerate(features):
        example_to_features[feature["example_id"]].append(idx)

    predicted_answers = []
    for example in examples:
        example_id = example["id"]
        context = example["context"]
        answers = []
        for feature_index in example_to_features[example_id]:
            start_logit = start_logits[feature_index]
            end_logit = end_logits[feature_index]
            offsets = features[feature_index]["offset_mapping"]
            start_indexes = np.argsort(start_logit)[-1: -n_best - 1: -1].tolist()
            end_indexes = np.argsort(end_logit)[-1: -n_best - 1: -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if offsets[start_index] is None or offsets[end_index] is None:
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    answer = {"text": context[offsets[start_index][0]: offsets[end_index][1]],
                              "logit_score": start_logit[start_index] + end_logit[end_index]}
                    answers.append(answer)
        if len(answers) > 0:
            best_answer = max(answers, key=lambda x: x["logit_score"])
            predicted_answers.append({"id": example_id, "prediction_text": best_answer["text"]})
        else:
            predicted_answers.append({"id": example_id, "prediction_text": ""})
    return {p["id"]: p["prediction_text"] for p in predicted_answers}


def compute_metrics(start_logits, end_logits, features, examples):
    """The course's compute_metrics: its loop, then the squad metric (see the module docstring)."""
    from nlpfit.metrics.squad import squad_scores

    predicted = course_answers(start_logits, end_logits, features, examples)
    theoretical = {ex["id"]: ex["answers"]["text"] for ex in examples}
    return squad_scores(predicted, theoretical), predicted


def load(out: Path):
    """nlpfit's task, the data's validation and test splits, the trained model and its tokenizer."""
    from nlpfit.run import load_run
    from nlpfit.tasks import make_task

    cfg, _ = load_run(str(out))
    task = make_task(cfg)
    raw, facts = task.load_data(trained=task.trained_facts(str(out)))
    model, tokenizer = task.load_trained(str(out))
    return cfg, task, raw, facts, model, tokenizer


def plain_evaluation(model, tokenizer, raw, batch_size: int, tmp: Path, window=(max_length, stride)):
    """The course's evaluation: preprocess, Trainer.predict, compute_metrics."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(str(tmp / "trainer"), per_device_eval_batch_size=batch_size, report_to=[])
    trainer = Trainer(model=model, args=args, processing_class=tokenizer)

    def run():
        validation_dataset = raw.map(course_preprocess(tokenizer, *window), batched=True,
                                     remove_columns=raw.column_names)
        predictions, _, _ = trainer.predict(validation_dataset)
        start_logits, end_logits = predictions
        metrics, predicted = compute_metrics(start_logits, end_logits, validation_dataset, raw)
        return metrics, predicted, validation_dataset, start_logits, end_logits

    return run


def ours_evaluation(task, model, tokenizer, raw, facts, batch_size: int, precision: str):
    """`nlpfit evaluate`'s path after loading: the task's windows, then engines.loop.evaluate."""
    from nlpfit.engines.loop import evaluate

    def run():
        features, _ = task.preprocess({"validation": raw}, tokenizer, model.config, facts, training=False)
        return evaluate(task, model, tokenizer, features["validation"], raw, facts, batch_size,
                        precision=precision)

    return run


def quality(metrics: dict) -> str:
    return f"EM {metrics['exact_match']:.2f} / F1 {metrics['f1']:.2f}"


def same_share(a: dict, b: dict) -> float:
    return sum(a[k] == b.get(k) for k in a) / max(len(a), 1)


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    import datasets

    tmp.mkdir(parents=True, exist_ok=True)
    out, metrics = train_model(quick, tmp)
    cfg, task, raw, facts, model, tokenizer = load(out)
    bs = cfg.eval_batch_size
    validation = raw["validation"]
    n = len(validation)
    rows = []

    # training: the same steps, batch and learning rate; real tokens per second (evaluation apart)
    plain = plain_training(quick, raw, tmp)
    plain_metrics = plain_evaluation(plain["model"], plain["tokenizer"], validation, bs, tmp)()[0]
    rows.append(Row("qa", "training", "Trainer, course recipe (windows padded to 384)",
                    plain["rate"], "real tokens/s", "val " + quality(plain_metrics),
                    plain["seconds"], f"{train_settings(quick)['steps']} steps"))
    for precision in ["no", *device_precisions()]:
        m = metrics if precision == "no" else train_model(quick, tmp, precision)[1]
        rows.append(nlpfit_training_row("qa", m, precision, "val " + quality(m["eval"]), name="nlpfit train qa"))

    # evaluation: the whole of it, model loading apart
    seconds, (metrics, plain_pred, *_) = best_of(repeat, plain_evaluation(model, tokenizer, validation, bs, tmp))
    windows = len(validation.map(course_preprocess(tokenizer), batched=True, remove_columns=validation.column_names))
    rows.append(Row("qa", "evaluation", "course: preprocess + Trainer.predict + compute_metrics", n / seconds,
                    "questions/s", quality(metrics), seconds, f"{n} questions, {windows} windows"))
    for precision in ["fp32", *device_precisions()]:
        seconds, result = best_of(repeat, ours_evaluation(task, model, tokenizer, validation, facts, bs, precision))
        ours_pred = result.predictions
        rows.append(Row("qa", "evaluation", "nlpfit evaluate" + (f" --precision {precision}" if precision != "fp32"
                                                                  else ""),
                        n / seconds, "questions/s", f"{quality(result.metrics)}, same answers "
                        f"{same_share(plain_pred, ours_pred):.1%}", seconds))

    # post-processing alone (logits -> answers, the metric apart), on the course's logits and
    # features of the validation and test splits
    both = datasets.concatenate_datasets([raw[s] for s in ("validation", "test") if s in raw])
    for window, stage in (((max_length, stride), "post-processing"),
                          ((128, 32), "post-processing, 128-token windows")):
        course = plain_evaluation(model, tokenizer, both, bs, tmp, window)()[2:]
        rows += postprocessing_rows(task, facts, *course, both, repeat, stage, window)

    # prediction: the shipped pipeline one question per call, nlpfit predict batched
    rows += prediction_rows(out, task, both.select(range(min(len(both), 40))) if quick else both, repeat)
    return rows


def postprocessing_rows(task, facts, features, starts, ends, data, repeat: int, stage: str,
                        window: tuple[int, int]) -> list[Row]:
    """logits + features + questions -> id -> answer text, both sides on the same inputs."""
    from nlpfit.metrics.squad import squad_scores

    refs = dict(zip(data["id"], (a["text"] for a in data["answers"])))
    seconds, plain = best_of(repeat, lambda: course_answers(starts, ends, features, data))
    rows = [Row("qa", stage, "course: compute_metrics's loop", len(features) / seconds, "windows/s",
                quality(squad_scores(plain, refs)), seconds,
                f"{len(data)} questions, {len(features)} windows of {window[0]} tokens, stride {window[1]}")]
    seconds, answers = best_of(repeat, lambda: task.predicted_texts(data, features, starts, ends, facts.null_answers))
    rows.append(Row("qa", stage, "nlpfit: Arrow offsets + vectorised top-k (compute_metrics's path)",
                    len(features) / seconds, "windows/s",
                    f"{quality(squad_scores(answers, refs))}, same answers {same_share(plain, answers):.1%}", seconds))
    return rows


def prediction_rows(out: Path, task, data, repeat: int) -> list[Row]:
    from transformers import pipeline

    from nlpfit.run import predict_options

    items = [{"question": q, "context": c} for q, c in zip(data["question"], data["context"])]
    load_s, qa = timed(lambda: pipeline("question-answering", model=str(out), trust_remote_code=True))
    seconds, plain = best_of(repeat, lambda: [qa(question=it["question"], context=it["context"]) for it in items])
    plain_answers = [p["answer"] for p in plain]
    rows = [Row("qa", "prediction", "pipeline(\"question-answering\") (shipped in OUT), one question per call",
                len(items) / seconds, "questions/s", seconds=seconds, note=f"{len(items)} questions")]
    predictor = task.load_predictor(str(out))
    for precision in ["fp32", *device_precisions()]:
        popts = predict_options(task, {"precision": precision})
        seconds, ours = best_of(repeat, lambda: list(task.predict_with(predictor, items, popts)))
        same = sum(a == o["answer"] for a, o in zip(plain_answers, ours)) / len(items)
        rows.append(Row("qa", "prediction", "nlpfit predict" + (f" --precision {precision}" if precision != "fp32"
                                                                 else ""),
                        len(items) / seconds, "questions/s", f"same answers {same:.1%}", seconds))
    return rows


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    """torch.profiler runs of nlpfit's own paths: a few training steps (the engine's way: forward,
    backward, gradient clipping, fused AdamW, on length-grouped batches of windows) and one
    evaluation pass (engines.loop.evaluate with the post-processing), fp32 and bf16 autocast."""
    import functools

    import torch
    from transformers import AutoModelForQuestionAnswering

    from profiling import Runs, training_step

    from nlpfit.engines.loop import LengthGroupedBatches, evaluate, lengths_of, make_collate
    from nlpfit.models import packaged_minilm
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task

    cfg = resolve(default_config("qa", output=str(tmp / "unused")))
    task = make_task(cfg)
    raw, facts = task.load_data()
    path = packaged_minilm()
    model, tokenizer = task.build(raw, facts)
    features, facts = task.preprocess(raw, tokenizer, model.config, facts, training=True)
    train, validation = features["train"], features["validation"]
    collate = make_collate(task.collator(tokenizer, model), model)
    steps = 5 if quick else 20
    batches = list(LengthGroupedBatches(lengths_of(train), cfg.batch_size, cfg.seed, True))[:steps + 1]
    padded = [collate([train[i] for i in idx]) for idx in batches]
    runs = Runs()
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = AutoModelForQuestionAnswering.from_pretrained(path)
        runs.steps(f"training, {steps} steps of {cfg.batch_size} windows, {precision}",
                   training_step(model, lambda m, batch: m(**batch).loss, cfg.weight_decay, cfg.lr, precision), padded)
        runs.add(f"evaluation, {len(raw['validation'])} questions / {len(validation)} windows, {precision}",
                 functools.partial(evaluate, task, model, tokenizer, validation, raw["validation"], facts,
                                   cfg.eval_batch_size, precision=precision))
    return runs.profiles()
