"""Evaluation and prediction batches: longest first, at most batch_size examples, and for encoder
tasks a new batch where the length drops, so that little of a batch is padding."""

import random

import pytest

from nlpfit.inference import batches_by_length


@pytest.mark.parametrize("max_padding", [None, 0.25, 0.5])
def test_batches_cover_every_example_once_with_bounded_padding(max_padding):
    rng = random.Random(3)
    lengths = [rng.randint(1, 400) for _ in range(500)]
    batches = list(batches_by_length(lengths, 64, max_padding))
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(1 <= len(b) <= 64 for b in batches)
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)  # longest first, batch after batch
    if max_padding is None:
        assert [len(b) for b in batches] == [64] * 7 + [500 - 7 * 64]
    else:
        for b in batches:
            longest = max(lengths[i] for i in b)
            padding = 1 - sum(lengths[i] for i in b) / (longest * len(b))
            assert padding <= max_padding
        assert len(batches) > 8  # lengths from 1 to 400 do not fit 25% padding in 8 batches


def test_equal_lengths_make_full_batches():
    assert [len(b) for b in batches_by_length([128] * 100, 32, 0.25)] == [32, 32, 32, 4]


@pytest.mark.parametrize("task_name", ["ner", "qa"])
def test_evaluation_does_not_depend_on_the_batch_cut(task_name, tiny_models, monkeypatch):
    """The split evaluated in padding-bounded batches gives the metrics of full batches."""
    import nlpfit
    from nlpfit.tasks import task_class

    out = tiny_models(task_name)
    cls = task_class(task_name)
    assert cls.max_batch_padding == 0.25
    bounded = nlpfit.evaluate(out, split="validation")
    monkeypatch.setattr(cls, "max_batch_padding", None)
    full = nlpfit.evaluate(out, split="validation")
    assert bounded.keys() == full.keys()
    for key, value in full.items():
        if isinstance(value, float):
            assert bounded[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
