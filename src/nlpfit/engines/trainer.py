"""The trainer engine: transformers.Trainer (or a task's Trainer subclass, e.g. Seq2SeqTrainer),
with evaluation replaced by the shared loop so both engines report the same metrics."""

from __future__ import annotations

import time
from pathlib import Path

from nlpfit.engines import TrainResult
from nlpfit.engines.loop import cpu_distributed, evaluate, lengths_of
from nlpfit.log import info
from nlpfit.metrics import summary


def trainer_class(base):
    class NlpfitTrainer(base):
        """`base` with the task's loss and the task's evaluation."""

        def __init__(self, *args, task, features, raw, facts, eval_batch_size, loss_fn=None, on_evaluate=None,
                     **kwargs):
            super().__init__(*args, **kwargs)
            self.task, self.features, self.raw, self.facts = task, features, raw, facts
            self.eval_bs, self.loss_fn, self.on_evaluate = eval_batch_size, loss_fn, on_evaluate
            self.last_eval: dict = {}
            self.last_predictions = None
            if loss_fn is not None:
                self.model_accepts_loss_kwargs = False  # the task's loss is a mean: let Trainer scale it

        @property
        def history(self) -> list[dict]:
            """Per-evaluation entries (epoch, step, train loss, eval metrics) from the log history."""
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

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or self.loss_fn is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            return self.loss_fn(model, inputs)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
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


def train(task, cfg, model, tokenizer, features, raw, facts, checkpoint_dir: Path, on_evaluate=None) -> TrainResult:
    has_eval = "validation" in features
    per_epoch = "steps" if cfg.eval_steps else "epoch"
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
        eval_on_start=cfg.eval_before and has_eval,
        save_strategy="epoch",
        save_total_limit=1,
        logging_strategy=per_epoch,
        logging_steps=cfg.eval_steps or 500,
        report_to="none",
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        remove_unused_columns=True,
        disable_tqdm=False,
        use_cpu=cpu_distributed(),
        **task.training_arguments(),
    )
    trainer = trainer_class(base)(
        model=model, args=args, data_collator=task.collator(tokenizer, model),
        train_dataset=features["train"], eval_dataset=features["validation"] if has_eval else None,
        processing_class=tokenizer, task=task, features=features, raw=raw, facts=facts,
        eval_batch_size=cfg.eval_batch_size, loss_fn=task.loss_function(tokenizer), on_evaluate=on_evaluate)
    resume = None
    if cfg.resume:
        ckpts = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        resume = str(ckpts[-1]) if ckpts else None
        info(f"resuming from {Path(resume).name}" if resume else f"--resume: no checkpoint in {checkpoint_dir}")
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume)
    runtime = time.perf_counter() - start
    epochs = trainer.state.epoch or 0
    n_proc = trainer.accelerator.num_processes
    if hasattr(features["train"], "__len__"):
        n_samples, tokens = len(features["train"]) * epochs, sum(lengths_of(features["train"])) * epochs
    else:  # a stream (IterableDataset): what the steps consumed; its token count is not known
        n_samples, tokens = trainer.state.global_step * cfg.batch_size * cfg.grad_accum * n_proc, None
    train_metrics = {"loss": out.training_loss, "steps": trainer.state.global_step, "epochs": round(epochs, 4),
                     "runtime_s": round(runtime, 2),
                     "samples_per_second": round(n_samples / runtime, 2) if runtime else None,
                     "tokens_per_second": round(tokens / runtime, 1) if runtime and tokens is not None else None,
                     "num_processes": n_proc}
    history = trainer.history
    # the last scheduled evaluation is the final one; evaluate now if none ran after the last step
    if has_eval and (not history or history[-1]["step"] != trainer.state.global_step):
        trainer.evaluate()
    return TrainResult(model=trainer.model, accelerator=trainer.accelerator, train=train_metrics,
                       eval=trainer.last_eval, history=trainer.history, predictions=trainer.last_predictions)
