"""The trainer engine: transformers.Trainer (or a task's Trainer subclass, e.g. Seq2SeqTrainer),
with evaluation replaced by the shared loop so both engines report the same metrics, and with the
accelerate engine's checkpoints, log lines and tracker names:

- a checkpoint is written aside (`_get_output_dir`: Trainer writes into `checkpoints/.partial/`) and
  renamed into place with nlpfit's state.json last (`checkpoints.publish`), so a run killed during
  a save resumes from the previous one;
- the loss and tokens/s of each log line and metrics.json's `train` figures come from the run's
  totals (`loop.RunTotals`, saved in every checkpoint): Trainer's own restart at `--resume`;
- the history and the log lines are read from Trainer's `log_history`, which checkpoints keep;
- no checkpoint after the last step (OUT is the result), as on the accelerate engine.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ProgressCallback, TrainerCallback

from nlpfit.engines import TrainResult, checkpoints, tracking
from nlpfit.engines.loop import RunTotals, batch_tokens, cpu_distributed, evaluate
from nlpfit.log import info
from nlpfit.metrics import summary

LOG_KEYS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "tokens_seen")


class RunFlow(TrainerCallback):
    """No checkpoint after the last step, and an evaluation at the last step when it ends mid-epoch
    (Trainer's epoch strategy would skip it).  Runs after Trainer's DefaultFlowCallback."""

    def __init__(self, has_eval: bool):
        self.has_eval = has_eval

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False
            if self.has_eval and args.eval_strategy == "epoch" and state.epoch != int(state.epoch):
                control.should_evaluate = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False
        return control


class Progress(ProgressCallback):
    """Trainer's progress bar (steps, time left) with the last log line's loss, learning rate and
    tokens/s after it, instead of a printed dict per log line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}",
                                          tok_s=f"{logs.get('tokens_per_second') or 0:.0f}")


def epoch_seeded(sampler, seed: int):
    """Trainer's length-grouped sampler with its order drawn from (seed, epoch) instead of the global RNG,
    whose state at an epoch's start no checkpoint keeps: a run resumed in its second epoch then sees that
    epoch's order (the trainer's loader sets the epoch on it, as on a distributed sampler)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))

    if not isinstance(sampler, LengthGroupedSampler):
        return sampler  # (a random sampler is already seeded per epoch: accelerate's seedable sampler)
    return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths)


def trainer_class(base):
    class NlpfitTrainer(base):
        """`base` with the task's loss, the task's evaluation and nlpfit's checkpoints and figures."""

        def __init__(self, *args, task, features, raw, facts, eval_batch_size, loss_fn=None, totals=None,
                     keep: int = 1, on_checkpoint=None, on_evaluate=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.task, self.features, self.raw, self.facts = task, features, raw, facts
            self.eval_bs, self.loss_fn, self.on_evaluate = eval_batch_size, loss_fn, on_evaluate
            self.totals = totals or RunTotals()
            self.keep, self.on_checkpoint = keep, on_checkpoint
            self.last_eval: dict = {}
            self.last_predictions = None
            # every micro-batch's loss is its mean, divided by --grad-accum and averaged over processes, as on
            # the accelerate engine: for a model whose forward takes **kwargs, Trainer would otherwise multiply
            # the loss by the number of processes and skip that division, whether or not the model's loss
            # uses num_items_in_batch (BERT's does not: two processes doubled its loss and gradients)
            self.model_accepts_loss_kwargs = False

        @property
        def history(self) -> list[dict]:
            """Per-evaluation entries (epoch, step, last logged train loss, eval metrics) from the log history."""
            out, train_loss = [], None
            for h in self.state.log_history:
                if "loss" in h:
                    train_loss = h["loss"]
                if any(k.startswith("eval_") for k in h):
                    entry = {"epoch": round(h.get("epoch") or 0, 4), "step": h.get("step", 0),
                             "eval": {k[5:]: v for k, v in h.items() if k.startswith("eval_")}}
                    if train_loss is not None and entry["step"]:
                        entry["train_loss"] = train_loss
                    out.append(entry)
            return out

        @property
        def log_lines(self) -> list[dict]:
            """metrics.json's `log`: the log history's training lines."""
            return [{k: h.get(k) for k in LOG_KEYS} for h in self.state.log_history if "loss" in h]

        def _get_train_sampler(self, train_dataset=None):
            return epoch_seeded(super()._get_train_sampler(train_dataset), self.args.data_seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or self.loss_fn is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            return self.loss_fn(model, inputs)

        def training_step(self, model, inputs, num_items_in_batch=None):
            tokens, examples = batch_tokens(inputs), len(inputs["input_ids"])
            loss = super().training_step(model, inputs, num_items_in_batch)  # this micro-batch's share of the step
            self.totals.add(loss, tokens, examples)
            return loss

        def log(self, logs, start_time=None):
            if "loss" in logs:  # a log line: the window's loss and tokens/s from the run's totals
                self.totals.sync(self.accelerator)
                window = self.totals.take_window(self.state.global_step)
                logs.update(loss=window["loss"], tokens_per_second=window["tokens_per_second"],
                            tokens_seen=window["tokens_seen"])
            elif "train_runtime" in logs:  # Trainer's figures of this session; metrics.json has the run's
                return
            super().log(logs, start_time)

        def _get_output_dir(self, trial):
            return str(Path(self.args.output_dir) / checkpoints.PARTIAL)  # checkpoints are written aside

        def _save_checkpoint(self, model, trial):
            self.totals.sync(self.accelerator)
            super()._save_checkpoint(model, trial)  # into checkpoints/.partial/checkpoint-STEP
            self.accelerator.wait_for_everyone()
            if self.is_world_process_zero():
                written = checkpoints.staging(Path(self.args.output_dir), self.state.global_step)
                path = checkpoints.publish(written, {"global_step": self.state.global_step,
                                                     "totals": self.totals.as_dict()}, self.keep)
                if self.on_checkpoint is not None:
                    self.on_checkpoint(path)
            self.accelerator.wait_for_everyone()

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            with self.totals.paused():  # evaluation time is not training time
                result = evaluate(self.task, self.model, self.processing_class, self.features["validation"],
                                  self.raw["validation"], self.facts, self.eval_bs, self.accelerator,
                                  desc=f"evaluating (step {self.state.global_step})")
            metrics = self.last_eval = result.metrics
            self.last_predictions = result.predictions
            flat = {f"{metric_key_prefix}_{k}": v for k, v in summary(metrics).items()}
            info(f"[epoch {self.state.epoch or 0:.2f}] " + "  ".join(f"{k} {v:.4f}" for k, v in summary(metrics).items()))
            self.log(flat)  # into state.log_history, which checkpoints keep: `history` survives --resume
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, flat)
            if self.on_evaluate and self.on_evaluate(self.state.global_step, summary(metrics)):
                info(f"stopped after the evaluation at step {self.state.global_step}")
                self.control.should_training_stop = True
            return flat

    return NlpfitTrainer


def train(task, cfg, model, tokenizer, features, raw, facts, checkpoint_dir: Path, runs_dir: Path | None = None,
          on_checkpoint=None, on_evaluate=None) -> TrainResult:
    has_eval = "validation" in features
    per_epoch = "steps" if cfg.eval_steps else "epoch"
    resume = checkpoints.newest(checkpoint_dir) if cfg.resume else None
    if cfg.resume:
        info(f"resuming from {resume.name}" if resume else f"--resume: no checkpoint in {checkpoint_dir}")
    saved = checkpoints.read_state(resume) if resume else {}
    runs_dir = runs_dir or checkpoint_dir.parent / "runs"
    report_to, tracker_callbacks = tracking.trainer_callbacks(tracking.trackers(cfg.report_to),
                                                              runs_dir / cfg.out.name, saved.get("global_step"))
    base, args_cls = task.trainer_classes()
    args = args_cls(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="constant_with_warmup" if cfg.scheduler == "constant" else cfg.scheduler,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch_fused",
        seed=cfg.seed,
        data_seed=cfg.seed,
        fp16=cfg.mixed_precision == "fp16",
        bf16=cfg.mixed_precision == "bf16",
        eval_strategy=per_epoch if has_eval else "no",
        eval_steps=cfg.eval_steps or None,
        eval_on_start=cfg.eval_before and has_eval and resume is None,
        save_strategy="steps" if cfg.save_steps else "epoch",
        save_steps=cfg.save_steps or 500,
        save_total_limit=None,  # checkpoints.publish keeps the newest --save-total-limit, once complete
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        report_to=report_to,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        remove_unused_columns=True,
        disable_tqdm=False,
        use_cpu=cpu_distributed(),
        **task.training_arguments(),
    )
    trainer = trainer_class(base)(
        model=model, args=args, data_collator=task.collator(tokenizer, model),
        train_dataset=features["train"], eval_dataset=features["validation"] if has_eval else None,
        processing_class=tokenizer, callbacks=[RunFlow(has_eval), *tracker_callbacks], task=task,
        features=features, raw=raw, facts=facts, eval_batch_size=cfg.eval_batch_size,
        loss_fn=task.loss_function(tokenizer), totals=RunTotals(saved.get("totals")), keep=cfg.save_total_limit,
        on_checkpoint=on_checkpoint, on_evaluate=on_evaluate)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(Progress())
    trainer.totals.start()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.totals.sync(trainer.accelerator)
    # the last scheduled evaluation is the final one; evaluate now if none ran after the last step
    history = trainer.history
    if has_eval and (not history or history[-1]["step"] != trainer.state.global_step):
        trainer.evaluate()
    train_metrics = trainer.totals.train_figures(trainer.state.global_step, round(trainer.state.epoch or 0, 4),
                                                 trainer.accelerator.num_processes)
    return TrainResult(model=trainer.model, accelerator=trainer.accelerator, train=train_metrics,
                       eval=trainer.last_eval, history=trainer.history, log=trainer.log_lines,
                       predictions=trainer.last_predictions)
