"""Post-processing on hand-made logits, and the SQuAD metrics on known examples."""

import numpy as np
import pytest

from nlpfit.metrics.squad import score_one, squad_scores
from nlpfit.tasks.qa import best_answers

CONTEXT = "alpha beta gamma delta epsilon zeta"
WORD = {w: [CONTEXT.index(w), CONTEXT.index(w) + len(w)] for w in CONTEXT.split()}


def window(words: list[str]) -> list:
    """Offsets of [CLS] q q [SEP] words... [SEP]: None outside the context."""
    return [None, None, None, None] + [WORD[w] for w in words] + [None]


def logits(offsets, high: dict[int, float], pad: int = 0, pad_value: float = -100.0):
    x = np.full(len(offsets) + pad, -10.0)
    x[len(offsets):] = pad_value
    for i, v in high.items():
        x[i] = v
    return x


A = window(["alpha", "beta", "gamma", "delta"])  # context tokens at 4..7
B = window(["gamma", "delta", "epsilon", "zeta"])


def run(features, starts, ends, **kw):
    examples = [{"id": "q", "context": CONTEXT}]
    feats = [{"example_id": "q", "offset_mapping": f, "cls_index": 0} for f in features]
    return best_answers(examples, feats, starts, ends, **kw)["q"]


def test_best_span_over_all_windows_with_text_cut_from_the_context():
    starts = [logits(A, {4: 2.0}), logits(B, {6: 3.0})]
    ends = [logits(A, {5: 2.0}), logits(B, {7: 3.0})]
    ans = run([A, B], starts, ends)
    assert ans["text"] == "epsilon zeta" and (ans["start"], ans["end"]) == (23, 35)
    assert ans["score"] == pytest.approx(6.0)
    starts[0][4] = 4.0  # now window A's span is better
    assert run([A, B], starts, ends)["text"] == "alpha beta"


def test_question_tokens_padding_and_reversed_spans_are_never_answers():
    start = logits(A, {1: 50.0, 6: 5.0, 4: 1.0}, pad=3, pad_value=80.0)  # question token, then padding
    end = logits(A, {2: 50.0, 5: 6.0, 7: 0.5}, pad=3, pad_value=80.0)
    ans = run([A], [start], [end])
    # gamma(6)..beta(5) is reversed; the best valid spans: alpha..beta (1+6) beats gamma..delta (5+0.5)
    assert ans["text"] == "alpha beta"


def test_max_answer_length_in_tokens():
    C = window(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])
    start = logits(C, {4: 5.0, 7: 1.0})
    end = logits(C, {9: 5.0, 8: 1.0})
    assert run([C], [start], [end], max_answer_length=30)["text"] == CONTEXT  # 6 tokens
    assert run([C], [start], [end], max_answer_length=4)["text"] == "delta epsilon zeta"  # 1 + 5
    assert run([C], [start], [end], max_answer_length=2)["text"] == "delta epsilon"  # 1 + 1


def test_n_best_limits_the_candidates():
    start = logits(A, {7: 9.0, 4: 8.0})  # best start delta, second alpha
    end = logits(A, {5: 9.0, 6: 1.0})  # best end beta, second gamma
    assert run([A], [start], [end], n_best=1)["text"] == ""  # delta..beta is reversed: no candidate
    assert run([A], [start], [end], n_best=2)["text"] == "alpha beta"


def test_null_answer_when_the_null_score_beats_the_best_span_by_the_threshold():
    start = [logits(A, {0: 4.0, 4: 2.0}), logits(B, {0: 6.0})]
    end = [logits(A, {0: 4.0, 5: 2.0}), logits(B, {0: 6.0})]
    # null score = the smallest CLS score over the windows (8, not 12); best span 4
    assert run([A, B], start, end, null_answers=True)["text"] == ""
    assert run([A, B], start, end, null_answers=True)["score"] == pytest.approx(8.0)
    assert run([A, B], start, end, null_answers=True, null_threshold=3.9)["text"] == ""
    assert run([A, B], start, end, null_answers=True, null_threshold=4.1)["text"] == "alpha beta"
    assert run([A, B], start, end, null_answers=False)["text"] == "alpha beta"  # SQuAD 1.1: always a span


def test_probability_is_start_times_end_softmax_over_the_context():
    start, end = logits(A, {4: 3.0}), logits(A, {5: 3.0})
    ans = run([A], [start], [end])
    p = np.exp(3.0) / (np.exp(3.0) + 3 * np.exp(-10.0))
    assert ans["probability"] == pytest.approx(p * p)


# ---- metrics --------------------------------------------------------------------------------------
def test_official_normalisation_lowercase_punctuation_articles_whitespace():
    assert score_one("The Cat!", ["cat"]) == (1.0, 1.0)
    assert score_one("  an  apple,  ", ["Apple"]) == (1.0, 1.0)
    assert score_one("the cat sat on the mat", ["a cat sat"]) == pytest.approx((0.0, 2 * 0.5 * 1 / 1.5))
    assert score_one("Broncos team", ["Denver Broncos", "Broncos"]) == pytest.approx((0.0, 2 / 3))
    assert score_one("Denver Broncos", ["Denver Broncos", "The Denver Broncos", "Broncos"]) == (1.0, 1.0)
    assert score_one("theater", ["the theater"]) == (1.0, 1.0)  # whole-word articles only
    assert score_one("them", ["the m"]) == (0.0, 0.0)


def test_squad_metric_card_example():
    preds = {"56e10a3be3433e1400422b22": "1976"}
    refs = {"56e10a3be3433e1400422b22": ["1976"]}
    assert squad_scores(preds, refs) == {"exact_match": 100.0, "f1": 100.0, "total": 1}


def test_squad_v2_has_answer_and_no_answer_groups():
    refs = {"a": ["Denver Broncos"], "b": ["1976", "in 1976"], "c": [], "d": []}
    preds = {"a": "the Denver Broncos", "b": "1976 and 1977", "c": "", "d": "a guess"}
    s = squad_scores(preds, refs)
    f1_b = 2 * (1 / 3) * 1 / (1 / 3 + 1)  # 1976 in "1976 and 1977"
    assert s["total"] == 4 and s["HasAns_total"] == 2 and s["NoAns_total"] == 2
    assert s["HasAns_exact_match"] == pytest.approx(50.0) and s["HasAns_f1"] == pytest.approx(50 * (1 + f1_b))
    assert s["NoAns_exact_match"] == pytest.approx(50.0) and s["NoAns_f1"] == pytest.approx(50.0)
    assert s["exact_match"] == pytest.approx(50.0) and s["f1"] == pytest.approx(25 * (1 + f1_b + 1))
    assert "HasAns_total" not in squad_scores({"a": "x"}, {"a": ["x"]})
