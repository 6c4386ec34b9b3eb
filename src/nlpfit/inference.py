"""What prediction and evaluation share across tasks: the inference device, autocast, logits and losses
at labelled positions only, per-example token losses and batches of inputs of similar length."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


def inference_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def autocast(precision: str, device, model=None):
    """bfloat16 autocast for `precision` "bf16" (inference and evaluation), nothing for "fp32".

    With `model`, its linear layers also hold bfloat16 copies of their weights while the context is
    open (`bf16_linear_weights`), so autocast does not cast every weight again at every call."""
    import torch

    device = torch.device(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        if precision == "bf16" and model is not None:
            with bf16_linear_weights(model):
                yield
        else:
            yield


def weight_copies(precision: str, model):
    """`bf16_linear_weights(model)` for `precision` "bf16", nothing for "fp32": held around a loop of
    batches that each enter `autocast(precision, device)`, the copies are made once for all of them."""
    from contextlib import nullcontext

    return bf16_linear_weights(model) if precision == "bf16" else nullcontext()


@contextmanager
def bf16_linear_weights(model):
    """Inside, every `torch.nn.Linear` (and transformers' `Conv1D`, GPT-2's linear layer) of `model`
    computes with a bfloat16 copy of its fp32 weight and bias; the fp32 parameters are back on exit.

    autocast rounds a linear layer's weight and bias to bfloat16 at every call (its cast cache holds
    only while gradients are recorded); the copies are that same rounding done once, so the results are
    autocast's, bit for bit.  Only those layers change: embeddings and norms keep their fp32 weights
    (an output layer tied to the embedding gets its own copy), and the copies cost half the linear
    weights' memory while they exist.  Use it only for inference: the copies have no gradient."""
    import torch

    from transformers.pytorch_utils import Conv1D

    kinds = [torch.nn.Linear, Conv1D]
    model = getattr(model, "module", model)
    copies: dict[int, torch.Tensor] = {}
    swapped = []
    with torch.no_grad():
        for module in model.modules():
            if type(module) not in kinds:
                continue
            for name in ("weight", "bias"):
                param = module._parameters.get(name)
                if param is None or param.dtype != torch.float32:
                    continue
                if id(param) not in copies:
                    copies[id(param)] = param.detach().to(torch.bfloat16)
                swapped.append((module, name, param))
                module._parameters[name] = copies[id(param)]
    try:
        yield
    finally:
        for module, name, param in swapped:
            module._parameters[name] = param


def summed_token_losses(logits, labels):
    """Cross-entropy summed over each example's labelled positions ([batch, length, classes] logits,
    [batch, length] labels, -100 ignored), in fp32.  The logits are flattened, not transposed: the
    softmax then runs over contiguous rows, several times faster for a large vocabulary."""
    import torch

    losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                               reduction="none")
    return losses.view_as(labels).sum(dim=1)


def labelled_logits(model, inputs: dict, labels):
    """(logits [n, vocab], labels [n], row of each) for the n labelled positions of a batch (labels
    [batch, length], -100 ignored): `model(**inputs)` with its output projection, a language model's
    largest matrix product, applied to those positions only, through a pre-hook on the model's output
    embeddings that keeps only their hidden states.  A head that sees anything but [batch, length,
    hidden] states (ProphetNet's n-gram streams, ...) or reshapes its output gets them all, and the
    logits are indexed afterwards: the same numbers either way."""
    import torch

    keep = labels != -100
    head = getattr(model, "module", model).get_output_embeddings()
    logits = None
    if head is not None:
        hooked = []

        def only_labelled(module, args):
            states = args[0]
            if states.dim() != keep.dim() + 1 or states.shape[:-1] != keep.shape or hooked:
                return None  # not one hidden state per label position: leave it whole
            hooked.append(True)
            return (states[keep],) + tuple(args[1:])

        hook = head.register_forward_pre_hook(only_labelled)
        try:
            logits = model(**inputs).logits
        except (RuntimeError, IndexError, ValueError):  # the head reshapes its output: full logits
            logits, hooked = None, []
        finally:
            hook.remove()
        if logits is not None and not hooked and logits.shape[:-1] == keep.shape:
            logits = logits[keep]  # the head saw everything: index its logits
        elif logits is not None and (not hooked or logits.ndim != 2 or logits.shape[0] != int(keep.sum())):
            logits = None
    if logits is None:
        logits = model(**inputs).logits[keep]
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[keep]
    return logits, labels[keep], rows


def summed_labelled_losses(model, inputs: dict, labels):
    """Cross-entropy summed over each example's labelled positions, in fp32, the logits computed only
    there (`labelled_logits`): what `summed_token_losses` gives from full logits."""
    import torch

    logits, kept, rows = labelled_logits(model, inputs, labels)
    losses = torch.nn.functional.cross_entropy(logits.float(), kept, reduction="none")
    return torch.zeros(labels.shape[0], dtype=losses.dtype, device=losses.device).index_add_(0, rows, losses)


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
