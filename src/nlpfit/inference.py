"""What prediction shares across tasks: the inference device and batches of inputs of similar length."""

from __future__ import annotations

from typing import Iterator


def inference_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(precision: str, device):
    """bfloat16 autocast for `precision` "bf16" (inference and evaluation), nothing for "fp32"."""
    import torch

    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def longest_first(lengths: list[int]) -> list[int]:
    """Indices of the examples, longest first (stable among equal lengths): batches cut from this
    order pad little; a caller puts its results back in input order by index."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def batches_by_length(lengths: list[int], batch_size: int, max_padding: float | None = None) -> Iterator[list[int]]:
    """Batches of indices of examples of similar length (`longest_first`, cut every `batch_size`).

    With `max_padding`, a batch also ends before an example shorter than (1 - max_padding) times its
    longest: at most that share of a batch's tokens is padding.  For encoders, whose cost is the
    tokens computed, this beats full batches of very different lengths; greedy decoders, whose cost
    is one step per generated token for the whole batch, keep full batches (None)."""
    order = longest_first(lengths)
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == batch_size
                      or (max_padding is not None and lengths[i] < (1 - max_padding) * lengths[batch[0]])):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch
