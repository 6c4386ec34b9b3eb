"""Pieces both engines share: length-grouped batching, the collate wrapper, the optimizer's
parameter groups and the evaluation loop (sorted by length, inference mode, gathered across
processes so metrics do not depend on the number of processes)."""

from __future__ import annotations

import inspect
import math
import random
from typing import Callable

import numpy as np
import torch

from nlpfit.inference import longest_first


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


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """Fraction of batch tokens that are padding."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / total if total else 0.0


def evaluate(task, model, tokenizer, features, raw, facts, batch_size: int, accelerator=None,
             desc: str = "evaluating"):
    """Task metrics on one split (an `Evaluation`): batches sorted by length, run under inference
    mode, outputs gathered across processes and put back in dataset order, then `task.compute_metrics`."""
    outputs = predict_outputs(task, model, tokenizer, features, batch_size, accelerator, desc)
    return task.compute_metrics(outputs, features, raw, facts, tokenizer)


def predict_outputs(task, model, tokenizer, features, batch_size: int, accelerator=None,
                    desc: str = "evaluating") -> dict:
    """Per-example outputs of `task.eval_step`, in dataset order, identical for any process count.

    The split is reordered longest first and cut into fixed-size batches; accelerate shards the
    batches over processes, `pad_across_processes` evens out sequence lengths and
    `gather_for_metrics` drops the samples duplicated to even out the last batch.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    accelerator = accelerator or Accelerator(cpu=cpu_distributed())
    lengths = lengths_of(features)
    order = longest_first(lengths)
    collate = make_collate(task.eval_collator(tokenizer, model), model)
    loader = DataLoader(features.select(order), batch_size=batch_size, shuffle=False, collate_fn=collate)
    loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    gathered: dict[str, list] = {}
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
            out = task.eval_step(model, batch)
            for key, value in out.items():
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
