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


def batches_by_length(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Batches of indices of examples of similar length (`longest_first`, cut every `batch_size`)."""
    order = longest_first(lengths)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
