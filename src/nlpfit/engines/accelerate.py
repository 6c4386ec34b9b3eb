"""The accelerate engine: a plain training loop on accelerate.Accelerator.

Same loop on one CPU, one GPU or many (`accelerate launch` / `torchrun`): AdamW, linear (or
cosine/constant) schedule with warmup, gradient accumulation, optional mixed precision, length-
grouped batches; a log line every `--logging-steps` (metrics.json's `log`, the trackers, the
progress bar); evaluation every epoch (or every N steps); a checkpoint every epoch (or every
`--save-steps`) that `--resume` continues from at the exact next batch: model, optimizer,
scheduler and RNG states, the position in the data, and the run's figures so far.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nlpfit.engines import TrainResult, checkpoints, tracking
from nlpfit.engines.loop import (LengthGroupedBatches, RunTotals, batch_tokens, cpu_distributed, evaluate, lengths_of,
                                 make_collate, param_groups, rng_state, set_rng_state)
from nlpfit.log import info
from nlpfit.metrics import summary


def save_checkpoint(accelerator, folder: Path, state: dict, keep: int = 1) -> Path | None:
    """Model, optimizer, scheduler and RNG states (`save_state`, on every process), plus where the loop
    is and the run's figures so far (state.json), written aside and renamed into place; keeps the
    newest `keep`.  Returns the checkpoint's path on the main process."""
    written = checkpoints.staging(folder, state["global_step"])
    accelerator.save_state(str(written))
    accelerator.wait_for_everyone()  # every process has written its part (its RNG state, its shard)
    path = checkpoints.publish(written, state, keep) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return path


def train(task, cfg, model, tokenizer, features, raw, facts, checkpoint_dir: Path, runs_dir: Path | None = None,
          on_checkpoint=None, on_evaluate=None) -> TrainResult:
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    trackers = tracking.trackers(cfg.report_to)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              cpu=cpu_distributed(), log_with=trackers or None,
                              project_dir=str(runs_dir or checkpoint_dir.parent / "runs"))
    eval_split = "validation" if "validation" in features else None

    # ---- data: length-grouped batches, reshuffled every epoch --------------------------------
    train_set = features["train"]
    collate = make_collate(task.collator(tokenizer, model), model)
    if isinstance(train_set, torch.utils.data.IterableDataset):
        # a stream (e.g. datasets.IterableDataset): batches in stream order, no length: one pass, --max-steps
        if cfg.max_steps <= 0:
            from nlpfit import NlpfitError

            raise NlpfitError("the training set is a stream (no length): set --max-steps")
        sampler = None
        train_loader = DataLoader(train_set, batch_size=cfg.batch_size, collate_fn=collate)
    else:
        sampler = LengthGroupedBatches(lengths_of(train_set), cfg.batch_size, cfg.seed, cfg.group_by_length)
        train_loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate)

    # ---- optimizer and schedule ---------------------------------------------------------------
    # the fused kernel (CPU and GPU) updates all parameters in one pass: ~7x cheaper steps than foreach on CPU
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=True)
    updates_per_epoch = (cfg.max_steps if sampler is None else
                         math.ceil(math.ceil(len(sampler) / accelerator.num_processes) / cfg.grad_accum))
    total_updates = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.epochs * updates_per_epoch)
    num_epochs = math.ceil(total_updates / updates_per_epoch)
    warmup = round(cfg.warmup_ratio * total_updates)
    # accelerate steps the scheduler once per process for every optimizer step
    scheduler = get_scheduler(cfg.scheduler if cfg.scheduler != "constant" else "constant_with_warmup", optimizer,
                              num_warmup_steps=warmup * accelerator.num_processes,
                              num_training_steps=total_updates * accelerator.num_processes)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    loss_fn = task.loss_function(tokenizer) or (lambda model, batch: model(**batch).loss)

    # ---- resume: where the loop was, what it had logged and evaluated, its figures so far ------
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "log": [], "totals": {}}
    if cfg.resume:
        ckpt = checkpoints.newest(checkpoint_dir)
        if ckpt is None:
            info(f"--resume: no checkpoint in {checkpoint_dir}; starting from scratch")
        else:
            accelerator.load_state(str(ckpt))
            state = checkpoints.read_state(ckpt)
            info(f"resuming from {ckpt.name} (epoch {state['epoch']}, step {state['global_step']})")
    history, log, totals = state["history"], state["log"], RunTotals(state["totals"])
    # a resumed run's TensorBoard writer hides the events logged after its checkpoint: they are redone
    accelerator.init_trackers(cfg.out.name, config=tracking.hparams(cfg),
                              init_kwargs={"tensorboard": {"purge_step": state["global_step"]}}
                              if state["global_step"] else None)

    def epoch_now() -> float:
        return round(state["epoch"] + state["step_in_epoch"] / updates_per_epoch, 4)

    last = {"eval": {}, "predictions": None}

    def run_eval(tag: str) -> dict:
        if eval_split is None:
            return {}
        with totals.paused():  # evaluation time is not training time
            result = evaluate(task, model, tokenizer, features[eval_split], raw[eval_split], facts,
                              cfg.eval_batch_size, accelerator, desc=f"evaluating ({tag})")
        flat = summary(result.metrics)
        info(f"[{tag}] " + "  ".join(f"{k} {v:.4f}" for k, v in flat.items()))
        accelerator.log(tracking.eval_scalars(flat, epoch_now()), step=state["global_step"])
        last.update(eval=result.metrics, predictions=result.predictions)
        return flat

    def checkpoint() -> None:
        totals.sync(accelerator)
        state["totals"] = totals.as_dict()
        path = save_checkpoint(accelerator, checkpoint_dir, state, cfg.save_total_limit)
        if path is not None and on_checkpoint is not None:
            on_checkpoint(path)

    def evaluated() -> bool:
        """Hand the evaluation just appended to `on_evaluate`; whether it says to stop training."""
        return bool(on_evaluate and on_evaluate(history[-1]["step"], history[-1]["eval"]))

    stop = False
    if cfg.eval_before and state["global_step"] == 0:
        history.append({"epoch": 0, "step": 0, "eval": run_eval("before training")})
        stop = evaluated()

    # ---- the loop -------------------------------------------------------------------------------
    progress = tqdm(total=total_updates, initial=state["global_step"], desc="training",
                    disable=not accelerator.is_local_main_process)
    model.train()
    totals.start()
    for epoch in range(state["epoch"], num_epochs if not stop else 0):
        # the prepared loader passes the epoch on to its batch sampler, but not to ours once it is
        # wrapped for several processes: set both
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        loader, restored_rng = train_loader, None
        if state["step_in_epoch"]:  # resuming mid-epoch: continue at the exact next batch
            loader = accelerator.skip_first_batches(train_loader, state["step_in_epoch"] * cfg.grad_accum)
            restored_rng = rng_state()
        for batch in loader:
            if restored_rng is not None:  # starting the data iterator drew a seed from the RNG that dropout uses
                set_rng_state(restored_rng)
                restored_rng = None
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or math.inf)
                    lr = scheduler.get_last_lr()[0]  # the rate of this step
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            totals.add(loss / cfg.grad_accum, batch_tokens(batch), len(batch["input_ids"]))
            if not accelerator.sync_gradients:
                continue
            state["global_step"] += 1
            state["step_in_epoch"] += 1
            step = state["global_step"]
            progress.update(1)
            if step % cfg.logging_steps == 0:
                totals.sync(accelerator)
                window = totals.take_window(step)
                entry = {"step": step, "epoch": epoch_now(), "loss": window["loss"], "learning_rate": lr,
                         "grad_norm": None if grad_norm is None else float(grad_norm),
                         "tokens_per_second": window["tokens_per_second"], "tokens_seen": window["tokens_seen"]}
                log.append(entry)
                accelerator.log(tracking.train_scalars(entry), step=step)
                progress.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{lr:.2e}",
                                     tok_s=f"{entry['tokens_per_second'] or 0:.0f}")
            if cfg.eval_steps and step % cfg.eval_steps == 0:
                history.append({"epoch": epoch_now(), "step": step, "eval": run_eval(f"step {step}")})
                stop = evaluated()
            if cfg.save_steps and step % cfg.save_steps == 0 and step < total_updates and not stop:
                checkpoint()
            if step >= total_updates or stop:
                break
        # ---- end of the epoch -----------------------------------------------------------------
        totals.sync(accelerator)
        epoch_loss = totals.take_epoch(state["global_step"])
        finished = state["step_in_epoch"] >= updates_per_epoch or state["global_step"] >= total_updates
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        if history and history[-1]["step"] == state["global_step"] and "train_loss" not in history[-1]:
            history[-1].update(epoch=epoch + 1, train_loss=epoch_loss)  # --eval-steps just evaluated this step
        else:
            history.append({"epoch": epoch + 1, "step": state["global_step"], "train_loss": epoch_loss,
                            "eval": run_eval(f"epoch {epoch + 1}")})
            stop = evaluated()
        if stop:
            info(f"stopped after the evaluation at step {state['global_step']}")
            break
        if not cfg.save_steps and finished and state["global_step"] < total_updates:
            checkpoint()
        if state["global_step"] >= total_updates:
            break
    progress.close()
    totals.sync(accelerator)
    for tracker in accelerator.trackers:  # (accelerator.end_training would also end the process group)
        tracker.finish()
    train_metrics = totals.train_figures(state["global_step"], state["epoch"], accelerator.num_processes)
    accelerator.wait_for_everyone()
    return TrainResult(model=accelerator.unwrap_model(model), accelerator=accelerator, train=train_metrics,
                       eval=last["eval"], history=history, log=log, predictions=last["predictions"])
