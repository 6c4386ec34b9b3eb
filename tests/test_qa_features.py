"""Question answering features: windows over long contexts, answer labels, evaluation offsets."""

import math
import random

import pytest

from nlpfit.tasks.qa import context_span, eval_features, train_features

WORDS = ("the statement is executed when the loop ends and the value of each name is bound in the "
         "local namespace of the function while a class body defines new attributes").split()


@pytest.fixture(scope="module")
def tok(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def long_context(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words)) + "."


def context_tokens(enc, i):
    """(first, last) token index of the context and its character offsets in window i."""
    s, e = context_span(enc.sequence_ids(i))
    return s, e, enc["offset_mapping"][i]


def test_windows_overlap_by_stride_and_cover_a_context_of_several_windows(tok):
    question, context = "What is bound in the local namespace?", long_context(300)
    max_len, stride = 64, 16
    enc = tok([question], [context], truncation="only_second", max_length=max_len, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    n_q = len(tok(question, add_special_tokens=False)["input_ids"])
    n_ctx = len(tok(context, add_special_tokens=False)["input_ids"])
    room = max_len - n_q - 3  # [CLS] question [SEP] context [SEP]
    expected = 1 + math.ceil(max(0, n_ctx - room) / (room - stride))
    assert len(enc["input_ids"]) == expected >= 4  # several windows
    feats = train_features({"question": [question], "context": [context], "answers": [{"text": [], "answer_start": []}]},
                           tok, max_len, stride)
    assert len(feats["input_ids"]) == expected
    covered = set()
    previous = None
    for i in range(expected):
        assert len(enc["input_ids"][i]) <= max_len
        s, e, offsets = context_tokens(enc, i)
        spans = [tuple(o) for o in offsets[s:e + 1]]
        covered.update(spans)
        if previous is not None:  # consecutive windows share exactly `stride` context tokens
            assert previous[-stride:] == spans[:stride]
            assert previous[-stride - 1] != spans[0]
        previous = spans
    all_tokens = tok(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert covered == {tuple(o) for o in all_tokens}


def _train(tok, question, context, answer_start, answer, max_len, stride):
    assert context[answer_start:answer_start + len(answer)] == answer
    batch = {"question": [question], "context": [context],
             "answers": [{"text": [answer], "answer_start": [answer_start]}]}
    feats = train_features(batch, tok, max_len, stride)
    enc = tok([question], [context], truncation="only_second", max_length=max_len, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    return feats, enc


def test_answer_only_in_the_second_window(tok):
    question = "What ends?"
    context = long_context(40, seed=1) + " The answer is the class body here."
    answer = "the class body"
    feats, enc = _train(tok, question, context, context.rindex(answer), answer, max_len=48, stride=8)
    assert len(feats["input_ids"]) >= 2
    starts, ends = feats["start_positions"], feats["end_positions"]
    assert starts[0] == ends[0] == 0  # CLS: the answer is not in the first window
    holding = [i for i in range(len(starts)) if starts[i] != 0]
    assert holding and holding[0] >= 1
    for i in holding:
        offsets = enc["offset_mapping"][i]
        assert context[offsets[starts[i]][0]:offsets[ends[i]][1]] == answer
        assert enc.sequence_ids(i)[starts[i]] == enc.sequence_ids(i)[ends[i]] == 1


def test_answer_crossing_a_window_boundary_is_labelled_only_where_it_is_whole(tok):
    question, context = "Which words?", long_context(120, seed=2)
    max_len, stride = 48, 12
    enc = tok([question], [context], truncation="only_second", max_length=max_len, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    s, e, offsets = context_tokens(enc, 0)
    # an answer of three tokens: the last token of window 0 and the next two
    start_char, end_char = offsets[e - 0][0], None
    all_offsets = tok(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    k = [tuple(o) for o in all_offsets].index(tuple(offsets[e]))
    end_char = all_offsets[k + 2][1]
    answer = context[start_char:end_char]
    feats, enc = _train(tok, question, context, start_char, answer, max_len, stride)
    starts, ends = feats["start_positions"], feats["end_positions"]
    assert starts[0] == ends[0] == 0  # window 0 holds only part of it
    assert starts[1] != 0  # window 1 starts `stride` tokens earlier and holds all of it
    off1 = enc["offset_mapping"][1]
    assert context[off1[starts[1]][0]:off1[ends[1]][1]] == answer
    assert ends[1] - starts[1] == 2


def test_labels_map_back_to_exactly_the_gold_text(tok):
    rng = random.Random(3)
    questions, contexts, answers = [], [], []
    for n in range(30):
        ctx = long_context(rng.randint(20, 150), seed=n)
        words = ctx.rstrip(".").split()
        i = rng.randrange(len(words) - 3)
        span = " ".join(words[i:i + rng.randint(1, 3)])
        start = len(" ".join(words[:i])) + (1 if i else 0)
        assert ctx[start:start + len(span)] == span
        questions.append("What is the value of each name?"), contexts.append(ctx)
        answers.append({"text": [span], "answer_start": [start]})
    feats = train_features({"question": questions, "context": contexts, "answers": answers}, tok, 40, 10)
    enc = tok(questions, contexts, truncation="only_second", max_length=40, stride=10,
              return_overflowing_tokens=True, return_offsets_mapping=True)
    labelled = 0
    for i, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"])):
        ex = enc["overflow_to_sample_mapping"][i]
        if s == 0:
            continue
        labelled += 1
        off = enc["offset_mapping"][i]
        assert contexts[ex][off[s][0]:off[e][1]] == answers[ex]["text"][0]
    assert labelled >= 30  # every answer is whole in at least one window


def test_unanswerable_questions_point_at_cls(tok):
    feats = train_features({"question": ["Who?"], "context": [long_context(60)],
                            "answers": [{"text": [], "answer_start": []}]}, tok, 32, 8)
    assert set(feats["start_positions"]) == set(feats["end_positions"]) == {0}


def test_eval_features_keep_ids_and_only_context_offsets_through_arrow(tok):
    import datasets

    from nlpfit.data.squad import to_dataset

    raw = to_dataset([{"id": f"q{i}", "title": "", "context": long_context(30 + 60 * i, seed=i),
                       "question": "What is bound?", "answers": {"text": [], "answer_start": []}} for i in range(3)])
    feats = raw.map(eval_features, batched=True, remove_columns=raw.column_names,
                    fn_kwargs={"tokenizer": tok, "max_length": 40, "stride": 10})
    assert isinstance(feats, datasets.Dataset)
    ids = feats["example_id"]
    assert ids == sorted(ids) and set(ids) == {"q0", "q1", "q2"} and ids.count("q2") > ids.count("q0") >= 1
    for row in feats:
        offsets, input_ids = row["offset_mapping"], row["input_ids"]
        assert len(offsets) == len(input_ids)
        assert offsets[0] is None and offsets[-1] is None  # CLS and the final SEP
        q_sep = input_ids.index(tok.sep_token_id)
        assert all(o is None for o in offsets[:q_sep + 1])  # question tokens are masked
        assert all(o is not None and o[1] > o[0] for o in offsets[q_sep + 1:-1])
        assert row["cls_index"] == 0


def test_a_question_too_long_for_the_windows_is_a_clear_error(tok):
    from nlpfit import NlpfitError

    batch = {"id": ["a"], "question": ["what is the value of each name " * 10], "context": [long_context(80)]}
    with pytest.raises(NlpfitError, match=r"--max-length 64 / --stride 24.*raise --max-length or lower --stride"):
        eval_features(batch, tok, 64, 24)
