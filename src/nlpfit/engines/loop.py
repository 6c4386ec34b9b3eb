"""Pieces both engines share: length-grouped batching, the collate wrapper, the optimizer's
parameter groups, the run's running figures (`RunTotals`) and the evaluation loop (sorted by
length, inference mode, gathered across processes so metrics do not depend on the number of
processes)."""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import time
from typing import Callable

import numpy as np
import torch

from nlpfit.inference import autocast, batches_by_length, longest_first


def cpu_distributed() -> bool:
    """Launched as several processes (torchrun / accelerate launch) on a machine without CUDA: gloo on CPU."""
    import os

    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def lengths_of(dataset) -> list[int]:
    if "length" in dataset.column_names:
        return list(dataset["length"])
    import pyarrow.compute as pc

    lengths = pc.list_value_length(dataset.data.column("input_ids")).to_numpy(zero_copy_only=False)
    if dataset._indices is not None:  # after select / shuffle: rows are read through an index mapping
        lengths = lengths[dataset._indices.column(0).to_numpy()]
    return lengths.tolist()


class LengthGroupedBatches:
    """Batches of examples of similar length, in a seeded random order that changes every epoch.

    Examples are sorted by (length, random key), cut into batches, and the batches shuffled: padding
    is minimal and each epoch still sees different batch compositions and order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.group:
            order.sort(key=lambda i: self.lengths[i])  # stable: ties keep their random order
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def model_inputs(model) -> set[str]:
    model = getattr(model, "module", model)
    return set(inspect.signature(model.forward).parameters) | {"labels"}


def make_collate(collator: Callable, model) -> Callable:
    """Drop the columns the model does not take (ids, offsets, lengths) before collating; a collator
    may name extra columns it needs in `input_columns` (e.g. word ids for whole-word masking)."""
    keep = model_inputs(model) | set(getattr(collator, "input_columns", ()))

    def collate(features):
        return collator([{k: v for k, v in f.items() if k in keep} for f in features])

    return collate


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def rng_state() -> dict:
    """The random generators a training step draws from (dropout, masking), to put back later."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def batch_tokens(batch) -> "torch.Tensor":
    """Real (non-padding) tokens of a batch, as a tensor on the batch's device (no host sync)."""
    if "attention_mask" in batch:
        return batch["attention_mask"].sum()
    ids = batch["input_ids"]
    return torch.tensor(ids.numel(), device=ids.device)


class RunTotals:
    """The figures of a training run so far, saved in every checkpoint so that metrics.json covers the
    whole run after `--resume`: the optimizer steps' losses summed over the run, since the epoch began
    and since the last log line, tokens and examples seen, training time (evaluations excluded).

    Each process adds its own micro-batches on its device, with no host sync per step; `sync`, which
    every process calls at the same points (a log line, a checkpoint, an epoch end, the end), folds
    them in: losses averaged over processes, tokens and examples summed.  The figures are then the
    same on every process, so a checkpoint written by the main process restores them on all.
    """

    FIELDS = ("loss", "epoch_loss", "window_loss", "tokens", "examples", "window_tokens", "seconds",
              "window_seconds", "epoch_from", "window_from")

    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        for name in self.FIELDS:
            setattr(self, name, saved.get(name, 0))
        self._loss = self._tokens = None
        self._examples = 0
        self._mark = time.perf_counter()

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def add(self, loss: torch.Tensor, tokens: torch.Tensor, examples: int) -> None:
        """One micro-batch: `loss` is its share of the optimizer step's loss (a step's loss is the sum of
        its micro-batches' shares), `tokens` its real tokens (`batch_tokens`)."""
        loss = loss.detach().float()
        self._loss = loss if self._loss is None else self._loss + loss
        self._tokens = tokens if self._tokens is None else self._tokens + tokens
        self._examples += examples

    def start(self) -> None:
        """Training starts now (the clock's time so far is not training time)."""
        self._mark = time.perf_counter()

    def clock(self) -> None:
        """Count the time since the last mark as training time."""
        now = time.perf_counter()
        self.seconds += now - self._mark
        self.window_seconds += now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def paused(self):
        """An evaluation: its time is not training time."""
        self.clock()
        try:
            yield
        finally:
            self._mark = time.perf_counter()

    def sync(self, accelerator) -> None:
        """Fold every process's pending micro-batches in (a collective: all processes call it)."""
        self.clock()
        device = accelerator.device
        loss = self._loss if self._loss is not None else torch.zeros((), device=device)
        tokens = self._tokens if self._tokens is not None else torch.zeros((), device=device, dtype=torch.long)
        counts = torch.stack([tokens.to(device=device, dtype=torch.long),
                              torch.tensor(self._examples, device=device, dtype=torch.long)])
        loss = accelerator.reduce(loss.to(device), reduction="mean").item()
        tokens, examples = accelerator.reduce(counts, reduction="sum").tolist()
        self.loss += loss
        self.epoch_loss += loss
        self.window_loss += loss
        self.tokens += tokens
        self.window_tokens += tokens
        self.examples += examples
        self._loss = self._tokens = None
        self._examples = 0

    def take_window(self, step: int) -> dict:
        """Mean loss and tokens per second since the last log line, and the real tokens trained on since
        the run began (then a new window starts at `step`); call after `sync`."""
        steps = max(step - self.window_from, 1)
        out = {"loss": self.window_loss / steps,
               "tokens_per_second": round(self.window_tokens / self.window_seconds, 1) if self.window_seconds else None,
               "tokens_seen": self.tokens}
        self.window_loss, self.window_tokens, self.window_seconds, self.window_from = 0.0, 0, 0.0, step
        return out

    def take_epoch(self, step: int) -> float:
        """Mean loss of the epoch's steps (then a new epoch starts at `step`); call after `sync`."""
        loss = self.epoch_loss / max(step - self.epoch_from, 1)
        self.epoch_loss, self.epoch_from = 0.0, step
        return loss

    def train_figures(self, steps: int, epochs: float, num_processes: int) -> dict:
        """metrics.json's `train`: the whole run's mean loss, steps, epochs, training time and throughput."""
        seconds = self.seconds
        return {"loss": self.loss / steps if steps else None, "steps": steps, "epochs": epochs,
                "runtime_s": round(seconds, 2),
                "samples_per_second": round(self.examples / seconds, 2) if seconds else None,
                "tokens_per_second": round(self.tokens / seconds, 1) if seconds else None,
                "num_processes": num_processes}


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """Fraction of batch tokens that are padding."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / total if total else 0.0


def evaluate(task, model, tokenizer, features, raw, facts, batch_size: int, accelerator=None,
             desc: str = "evaluating", precision: str = "fp32"):
    """Task metrics on one split (an `Evaluation`): batches sorted by length, run under inference
    mode (bf16 autocast with `precision` "bf16"), outputs gathered across processes and put back in
    dataset order, then `task.compute_metrics`."""
    outputs = predict_outputs(task, model, tokenizer, features, batch_size, accelerator, desc, precision)
    return task.compute_metrics(outputs, features, raw, facts, tokenizer)


def predict_outputs(task, model, tokenizer, features, batch_size: int, accelerator=None,
                    desc: str = "evaluating", precision: str = "fp32") -> dict:
    """Per-example outputs of `task.eval_step`, in dataset order, identical for any process count.

    The split is reordered longest first.  In one process it is cut by `inference.batches_by_length`
    (at most `batch_size` examples, and, for tasks with `max_batch_padding`, a new batch where the
    length drops below that share of the batch's longest).  Across several processes it is cut into
    fixed-size batches: accelerate shards them over processes, `pad_across_processes` evens out
    sequence lengths and `gather_for_metrics` drops the samples duplicated to even out the last batch.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    accelerator = accelerator or Accelerator(cpu=cpu_distributed())
    lengths = lengths_of(features)
    order = longest_first(lengths)
    collate = make_collate(task.eval_collator(tokenizer, model), model)
    sharded = accelerator.num_processes > 1
    if sharded:
        loader = DataLoader(features.select(order), batch_size=batch_size, shuffle=False, collate_fn=collate)
        loader = accelerator.prepare_data_loader(loader)
    else:  # positions in `order` of each batch (order is longest first already)
        position = {i: pos for pos, i in enumerate(order)}
        batches = [[position[i] for i in b] for b in batches_by_length(lengths, batch_size, task.max_batch_padding)]
        loader = DataLoader(features.select(order), batch_sampler=batches, collate_fn=collate)
    device = accelerator.device
    was_training = model.training
    model.eval()
    gathered: dict[str, list] = {}
    with torch.inference_mode(), autocast(precision, device, model):
        for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            if not sharded:
                batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
            out = task.eval_step(model, batch)
            for key, value in out.items():
                if sharded:
                    if value.ndim > 1:
                        value = accelerator.pad_across_processes(value, dim=1, pad_index=-100)
                    value = accelerator.gather_for_metrics(value)
                gathered.setdefault(key, []).extend(value.float().cpu().numpy() if value.is_floating_point()
                                                    else value.cpu().numpy())
    model.train(was_training)
    result = {}
    for key, rows in gathered.items():  # rows follow `order`: put them back in dataset order
        back = [None] * len(order)
        for pos, i in enumerate(order):
            back[i] = rows[pos]
        result[key] = back
    return result


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)
    np.random.seed(seed)
