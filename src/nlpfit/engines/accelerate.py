"""The accelerate engine: a plain training loop on accelerate.Accelerator.

Same loop on one CPU, one GPU or many (`accelerate launch` / `torchrun`): AdamW, linear (or
cosine/constant) schedule with warmup, gradient accumulation, optional mixed precision, length-
grouped batches, evaluation every epoch (or every N steps), a checkpoint every epoch that
`--resume` continues from (model, optimizer, scheduler, RNG states, data position).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch

from nlpfit.engines import TrainResult
from nlpfit.engines.loop import (LengthGroupedBatches, cpu_distributed, evaluate, lengths_of, make_collate,
                                 param_groups)
from nlpfit.log import info
from nlpfit.metrics import summary


def last_checkpoint(folder: Path) -> Path | None:
    ckpts = sorted(folder.glob("checkpoint-*/state.json"), key=lambda p: json.loads(p.read_text())["global_step"])
    return ckpts[-1].parent if ckpts else None


def save_checkpoint(accelerator, folder: Path, state: dict, keep: int = 1) -> Path:
    """Model, optimizer, scheduler and RNG states, plus where the loop is (state.json)."""
    path = folder / f"checkpoint-{state['global_step']}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / "state.json").write_text(json.dumps(state, indent=1))
        older = [p.parent for p in folder.glob("checkpoint-*/state.json") if p.parent != path]
        for old in sorted(older, key=lambda p: int(p.name.split("-")[1]))[: max(0, len(older) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def train(task, cfg, model, tokenizer, features, raw, facts, checkpoint_dir: Path, on_evaluate=None) -> TrainResult:
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              cpu=cpu_distributed())
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
    eval_seconds = [0.0]
    last = {"predictions": None}

    def run_eval(tag: str) -> dict:
        if eval_split is None:
            return {}
        t0 = time.perf_counter()
        result = evaluate(task, model, tokenizer, features[eval_split], raw[eval_split], facts, cfg.eval_batch_size,
                          accelerator, desc=f"evaluating ({tag})")
        last["predictions"] = result.predictions
        info(f"[{tag}] " + "  ".join(f"{k} {v:.4f}" for k, v in summary(result.metrics).items()))
        eval_seconds[0] += time.perf_counter() - t0
        return result.metrics

    # ---- resume ---------------------------------------------------------------------------------
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "tokens": 0, "examples": 0}
    if cfg.resume:
        ckpt = last_checkpoint(checkpoint_dir)
        if ckpt is None:
            info(f"--resume: no checkpoint in {checkpoint_dir}; starting from scratch")
        else:
            accelerator.load_state(str(ckpt))
            state = json.loads((ckpt / "state.json").read_text())
            info(f"resuming from {ckpt.name} (epoch {state['epoch']}, step {state['global_step']})")
    history = state["history"]

    def evaluated() -> bool:
        """Hand the evaluation just appended to `on_evaluate`; whether it says to stop training."""
        return bool(on_evaluate and on_evaluate(history[-1]["step"], history[-1]["eval"]))

    stop = False
    if cfg.eval_before and state["global_step"] == 0:
        history.append({"epoch": 0, "step": 0, "eval": summary(run_eval("before training"))})
        stop = evaluated()

    # ---- the loop -------------------------------------------------------------------------------
    progress = tqdm(total=total_updates, initial=state["global_step"], desc="training",
                    disable=not accelerator.is_local_main_process)
    start = time.perf_counter()
    last_eval: dict = {}
    model.train()
    for epoch in range(state["epoch"], num_epochs if not stop else 0):
        # the prepared loader counts epochs itself and passes them on to the sampler: tell it where we are
        train_loader.set_epoch(epoch) if hasattr(train_loader, "set_epoch") else sampler.set_epoch(epoch)
        loader = train_loader
        if state["step_in_epoch"]:
            loader = accelerator.skip_first_batches(train_loader, state["step_in_epoch"] * cfg.grad_accum)
            loader.set_epoch(epoch) if hasattr(loader, "set_epoch") else None
        loss_sum = torch.zeros((), device=accelerator.device)
        n_loss = 0
        for batch in loader:
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            loss_sum += loss.detach().float()
            n_loss += 1
            state["tokens"] += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            state["examples"] += len(batch["input_ids"])
            if not accelerator.sync_gradients:
                continue
            state["global_step"] += 1
            state["step_in_epoch"] += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if cfg.eval_steps and state["global_step"] % cfg.eval_steps == 0:
                last_eval = run_eval(f"step {state['global_step']}")
                history.append({"epoch": epoch + state["step_in_epoch"] / updates_per_epoch,
                                "step": state["global_step"], "eval": summary(last_eval)})
                stop = evaluated()
            if state["global_step"] >= total_updates or stop:
                break
        epoch_loss = accelerator.reduce(loss_sum / max(n_loss, 1), reduction="mean").item()
        finished = state["step_in_epoch"] >= updates_per_epoch or state["global_step"] >= total_updates
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        if history and history[-1]["step"] == state["global_step"] and "train_loss" not in history[-1]:
            history[-1].update(epoch=epoch + 1, train_loss=epoch_loss)  # --eval-steps just evaluated this step
        else:
            last_eval = run_eval(f"epoch {epoch + 1}")
            history.append({"epoch": epoch + 1, "step": state["global_step"], "train_loss": epoch_loss,
                            "eval": summary(last_eval)})
            stop = evaluated()
        if stop:
            info(f"stopped after the evaluation at step {state['global_step']}")
            break
        if finished and state["global_step"] < total_updates:
            save_checkpoint(accelerator, checkpoint_dir, state)
        if state["global_step"] >= total_updates:
            break
    progress.close()
    runtime = time.perf_counter() - start - eval_seconds[0]  # training time, evaluations excluded
    tokens = accelerator.reduce(torch.tensor(state["tokens"], device=accelerator.device), reduction="sum").item()
    examples = accelerator.reduce(torch.tensor(state["examples"], device=accelerator.device), reduction="sum").item()
    train_metrics = {"loss": history[-1].get("train_loss") if history else None, "steps": state["global_step"],
                     "epochs": state["epoch"], "runtime_s": round(runtime, 2),
                     "samples_per_second": round(examples / runtime, 2) if runtime else None,
                     "tokens_per_second": round(tokens / runtime, 1) if runtime else None,
                     "num_processes": accelerator.num_processes}
    accelerator.wait_for_everyone()
    return TrainResult(model=accelerator.unwrap_model(model), accelerator=accelerator, train=train_metrics,
                       eval=last_eval, history=history, predictions=last["predictions"])
