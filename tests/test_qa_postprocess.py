"""Post-processing on hand-made logits, and the SQuAD metrics on known examples."""

import numpy as np
import pytest

from nlpfit.metrics.squad import score_one, squad_scores
from nlpfit.pipelines.question_answering import Windows
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


# ---- the vectorised post-processing against a plain loop ------------------------------------------
def reference_answers(examples, features, start_logits, end_logits, *, n_best=20, max_answer_length=30,
                      null_answers=False, null_threshold=0.0):
    """The plain definition: every window, every pair of its n_best starts and ends in turn."""
    def softmax(x):
        if not len(x):
            return x
        e = np.exp(x - x.max())
        return e / e.sum()

    by_example = {}
    for i, f in enumerate(features):
        by_example.setdefault(f["example_id"], []).append(i)
    answers = {}
    for ex in examples:
        best, null = None, None
        for i in by_example.get(ex["id"], []):
            offsets = features[i]["offset_mapping"]
            n = len(offsets)
            s_log = np.asarray(start_logits[i][:n], dtype=np.float64)
            e_log = np.asarray(end_logits[i][:n], dtype=np.float64)
            cls = features[i].get("cls_index", 0) or 0
            allowed = np.array([o is not None for o in offsets])
            if null_answers:
                allowed[cls] = True
            s_prob, e_prob = np.zeros(n), np.zeros(n)
            s_prob[allowed], e_prob[allowed] = softmax(s_log[allowed]), softmax(e_log[allowed])
            null_score = float(s_log[cls] + e_log[cls])
            if null is None or null_score < null["score"]:
                null = {"text": "", "start": None, "end": None, "score": null_score,
                        "probability": float(s_prob[cls] * e_prob[cls])}
            s_top = [j for j in np.argsort(s_log, kind="stable")[::-1][:n_best] if offsets[j] is not None]
            e_top = [j for j in np.argsort(e_log, kind="stable")[::-1][:n_best] if offsets[j] is not None]
            for s in s_top:
                for e in e_top:
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(s_log[s] + e_log[e])
                    if best is None or score > best["score"]:
                        start, end = offsets[s][0], offsets[e][1]
                        best = {"text": ex["context"][start:end], "start": start, "end": end, "score": score,
                                "probability": float(s_prob[s] * e_prob[e])}
        if best is None:
            best = null if null is not None else {"text": "", "start": None, "end": None, "score": float("-inf"),
                                                  "probability": 0.0}
        elif null_answers and null["score"] - best["score"] > null_threshold:
            best = null
        answers[ex["id"]] = best
    return answers


def random_case(rng):
    """Examples with 0-4 windows each, in shuffled order: lengths 1-60, question tokens, windows
    without context tokens, logits drawn from few values (many ties), padded beyond the window."""
    examples, features, starts, ends = [], [], [], []
    for x in range(rng.integers(1, 8)):
        context = "".join(rng.choice(list("abcdefgh "), size=200))
        examples.append({"id": f"e{x}", "context": context})
        for _ in range(rng.integers(0, 5)):
            n = int(rng.integers(1, 60))
            question = int(rng.integers(0, min(n, 6)))
            offsets = [None] * question
            pos = int(rng.integers(0, 50))
            for _ in range(n - question):
                width = int(rng.integers(1, 4))
                offsets.append([pos, pos + width] if rng.random() > 0.1 else None)
                pos += width + int(rng.integers(0, 2))
            if rng.random() < 0.15:
                offsets = [None] * n  # a window without context tokens
            pad = int(rng.integers(0, 5))
            values = rng.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5], size=(2, n + pad))
            values[:, n:] = rng.choice([-100.0, 50.0])
            cls = int(rng.integers(0, max(question, 1)))
            features.append({"example_id": f"e{x}", "offset_mapping": offsets, "cls_index": cls})
            starts.append(values[0].astype(np.float32)), ends.append(values[1].astype(np.float32))
    if rng.random() < 0.2:
        features.append({"example_id": "not asked", "offset_mapping": [None, [0, 1]], "cls_index": 0})
        starts.append(np.zeros(2, np.float32)), ends.append(np.zeros(2, np.float32))
    order = rng.permutation(len(features))
    return examples, [features[i] for i in order], [starts[i] for i in order], [ends[i] for i in order]


def same(ours: dict, expected: dict) -> bool:
    """Equal answers, starts, ends and scores; probabilities up to summation rounding."""
    assert ours.keys() == expected.keys()
    for k, a in expected.items():
        b = ours[k]
        assert {x: b[x] for x in a if x != "probability"} == {x: a[x] for x in a if x != "probability"}, k
        assert b["probability"] == pytest.approx(a["probability"], rel=1e-12, abs=1e-300), k
    return True


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_answers_equal_the_plain_loop_on_random_windows(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        examples, features, starts, ends = random_case(rng)
        kw = {"n_best": int(rng.choice([1, 2, 5, 20, 100])), "max_answer_length": int(rng.integers(1, 12)),
              "null_answers": bool(rng.random() < 0.5), "null_threshold": float(rng.choice([-1.0, 0.0, 1.5]))}
        expected = reference_answers(examples, features, starts, ends, **kw)
        assert same(best_answers(examples, features, starts, ends, **kw), expected)
        if features:  # the same logits as one padded array
            width = max(len(s) for s in starts)
            grid = [np.full((len(starts), width), -100.0, np.float32) for _ in range(2)]
            for i, (s, e) in enumerate(zip(starts, ends)):
                grid[0][i, :len(s)], grid[1][i, :len(e)] = s, e
            assert same(best_answers(examples, features, grid[0], grid[1], **kw), expected)


# ---- on a real model's windows ----------------------------------------------------------------------
def course_answers(start_logits, end_logits, features, examples, n_best=20, max_answer_length=30):
    """The course's post-processing (chapter 7, question answering: compute_metrics's loop)."""
    import collections

    example_to_features = collections.defaultdict(list)
    for idx, feature in enumerate(features):
        example_to_features[feature["example_id"]].append(idx)
    predicted = {}
    for example in examples:
        answers = []
        for feature_index in example_to_features[example["id"]]:
            start_logit, end_logit = start_logits[feature_index], end_logits[feature_index]
            offsets = features[feature_index]["offset_mapping"]
            start_indexes = np.argsort(start_logit)[-1: -n_best - 1: -1].tolist()
            end_indexes = np.argsort(end_logit)[-1: -n_best - 1: -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if offsets[start_index] is None or offsets[end_index] is None:
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    answers.append({"text": example["context"][offsets[start_index][0]: offsets[end_index][1]],
                                    "logit_score": start_logit[start_index] + end_logit[end_index]})
        predicted[example["id"]] = max(answers, key=lambda x: x["logit_score"])["text"] if answers else ""
    return predicted


@pytest.fixture(scope="module")
def course_windows(tiny_models):
    """The tiny QA model's logits on the course's validation features (padded to max_length, offsets
    None outside the context), with long contexts cut into several windows."""
    import datasets
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from conftest import _qa_rows

    folder = tiny_models("qa")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    rows = _qa_rows(12, 5)
    for r in rows[::3]:  # longer contexts: several windows
        r["context"] = r["context"] + " " + r["context"]
    raw = datasets.Dataset.from_list(rows)

    def preprocess_validation_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(questions, examples["context"], max_length=64, truncation="only_second", stride=24,
                           return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
        sample_map = inputs.pop("overflow_to_sample_mapping")
        example_ids = []
        for i in range(len(inputs["input_ids"])):
            example_ids.append(examples["id"][sample_map[i]])
            sequence_ids = inputs.sequence_ids(i)
            inputs["offset_mapping"][i] = [o if sequence_ids[k] == 1 else None
                                           for k, o in enumerate(inputs["offset_mapping"][i])]
        inputs["example_id"] = example_ids
        return inputs

    features = raw.map(preprocess_validation_examples, batched=True, remove_columns=raw.column_names)
    assert len(features) > len(raw)
    names = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in features.column_names]
    with torch.inference_mode():
        out = model(**{k: torch.tensor(features[k]) for k in names})
    return raw, features, out.start_logits.numpy(), out.end_logits.numpy()


def test_arrow_windows_equal_the_windows_of_the_feature_dicts(course_windows):
    from nlpfit.tasks.qa import dataset_windows

    _, features, _, _ = course_windows
    for feats in (features, features.select([3, 0, 2]), features.shuffle(seed=1)):
        a, b = dataset_windows(feats), Windows.from_features(feats.to_list())
        assert a.ids() == b.ids() and a.cls.tolist() == b.cls.tolist() == [0] * len(feats)
        for name in ("lengths", "context", "char_start", "char_end"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_same_answers_as_the_course_post_processing_on_a_real_model(course_windows):
    from nlpfit.tasks.qa import dataset_windows

    raw, features, starts, ends = course_windows
    examples = raw.to_list()
    for n_best, longest in ((20, 30), (3, 2)):
        expected = course_answers(starts, ends, features, examples, n_best, longest)
        ours = best_answers(examples, dataset_windows(features), starts, ends, n_best=n_best, max_answer_length=longest)
        assert {i: a["text"] for i, a in ours.items()} == expected
        assert any(expected.values())


def test_unordered_top_k_holds_the_same_positions():
    from nlpfit.pipelines.question_answering import top_k

    rng = np.random.default_rng(3)
    for _ in range(50):
        x = rng.choice([-1.0, 0.0, 0.5, 2.0, 3.0], size=(6, 30))
        lengths = rng.integers(1, 31, size=6)
        x[np.arange(30)[None, :] >= lengths[:, None]] = -np.inf
        for k in (1, 5, 20, 40):
            ordered, loose = top_k(x, lengths, k), top_k(x, lengths, k, ordered=False)
            assert np.array_equal(np.sort(ordered, axis=1), np.sort(loose, axis=1))


def test_predicted_texts_read_from_arrow_equal_best_answers(course_windows):
    """The evaluation's path (ids, contexts and offsets from Arrow, windows mapped to questions by
    pyarrow) against best_answers on plain dicts, with rows selected and shuffled on both sides, a
    question without windows and windows of a question that is not asked."""
    from nlpfit.run import resolve
    from nlpfit.tasks import default_config, make_task

    raw, features, starts, ends = course_windows
    task = make_task(resolve(default_config("qa", output="unused")))
    order = np.random.default_rng(0).permutation(len(features))
    feats, s, e = features.select(order), starts[order], ends[order]
    questions = raw.shuffle(seed=2).select(range(1, len(raw)))  # the first one's windows: not asked
    extra = raw.select([0]).map(lambda r: {"id": "no windows"})
    import datasets

    questions = datasets.concatenate_datasets([questions, extra])
    for null_answers in (False, True):
        expected = best_answers(questions.to_list(), feats.to_list(), s, e, null_answers=null_answers)
        texts = task.predicted_texts(questions, feats, s, e, null_answers)
        assert texts == {i: a["text"] for i, a in expected.items()}
        assert list(texts) == questions["id"] and texts["no windows"] == ""
    assert any(texts.values())
    repeated = datasets.concatenate_datasets([questions.select([3]), questions])  # an id twice
    assert task.predicted_texts(repeated, feats, s, e, True) == texts


def test_arrow_windows_look_up_characters_of_chosen_tokens_only(course_windows):
    from nlpfit.tasks.qa import dataset_windows

    _, features, _, _ = course_windows
    dense = Windows.from_features(features.to_list())
    arrow = dataset_windows(features.select(range(2, len(features))))
    rows, pos = np.nonzero(dense.context[2:])
    cs, ce = arrow.chars(rows, pos)
    assert np.array_equal(cs, dense.char_start[2:][rows, pos]) and np.array_equal(ce, dense.char_end[2:][rows, pos])
    cls = np.zeros(len(arrow.lengths), dtype=np.int64)  # CLS: not in the context
    assert arrow.chars(np.arange(len(cls)), cls)[0].tolist() == [0] * len(cls)
