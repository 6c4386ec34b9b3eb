"""Extractive question-answering windows, post-processing and pipeline for a model folder saved by nlpfit.

transformers 5 removed its "question-answering" pipeline; this file is copied into the model folder
and named in config.json (`custom_pipelines`), so that

    from transformers import pipeline
    qa = pipeline("question-answering", model="OUT", trust_remote_code=True)
    qa(question="What does abs() return?", context="abs(x): Return the absolute value of a number.")
    # -> {"answer": "the absolute value of a number", "score": 0.41, "start": 15, "end": 45}

works with transformers alone.  nlpfit's evaluation and `nlpfit predict` use the same functions, so
the pipeline gives the answers that were scored.  Only transformers, torch and numpy are used.
"""

import numpy as np
from transformers import Pipeline


# ---- windows --------------------------------------------------------------------------------------
def windows(tokenizer, questions, contexts, max_length, stride):
    """Question first, context second; only the context is truncated, overflowing windows kept."""
    return tokenizer([q.lstrip() for q in questions], contexts, truncation="only_second", max_length=max_length,
                     stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)


def cls_position(input_ids, tokenizer):
    cls = tokenizer.cls_token_id
    return input_ids.index(cls) if cls is not None and cls in input_ids else 0


def window_features(batch, tokenizer, max_length, stride):
    """Evaluation windows: example id, CLS index, offsets of the context tokens (None elsewhere)."""
    enc = windows(tokenizer, batch["question"], batch["context"], max_length, stride)
    sample_map = enc.pop("overflow_to_sample_mapping")
    enc["example_id"] = [batch["id"][s] for s in sample_map]
    enc["cls_index"] = [cls_position(ids, tokenizer) for ids in enc["input_ids"]]
    enc["offset_mapping"] = [[list(o) if sid == 1 else None for o, sid in zip(offsets, enc.sequence_ids(i))]
                             for i, offsets in enumerate(enc["offset_mapping"])]
    return enc


# ---- post-processing ------------------------------------------------------------------------------
class Windows:
    """The windows' side of post-processing, as arrays: `example_id` (one per window), `lengths`
    (tokens per window), `context` [windows, tokens] (True where the token has offsets, i.e. lies in
    the context), `char_start` / `char_end` [windows, tokens] (its offsets) and `cls` (CLS index)."""

    def __init__(self, example_id, lengths, context, char_start, char_end, cls):
        self.example_id = example_id  # a sequence, or an Arrow array (to_pylist)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.context = np.asarray(context, dtype=bool)
        self.char_start = np.asarray(char_start, dtype=np.int64)
        self.char_end = np.asarray(char_end, dtype=np.int64)
        self.cls = np.asarray(cls, dtype=np.int64)

    def chars(self, rows, positions):
        """(start, end) character offsets of the tokens at `positions` of windows `rows` (arrays)."""
        return self.char_start[rows, positions], self.char_end[rows, positions]

    def ids(self) -> list:
        """The example id of each window."""
        ids = self.example_id
        return ids.to_pylist() if hasattr(ids, "to_pylist") else list(ids)

    @classmethod
    def from_features(cls, features):
        """From dicts with example_id, offset_mapping (None outside the context) and cls_index."""
        lengths = [len(f["offset_mapping"]) for f in features]
        width = max(lengths, default=0)
        context = np.zeros((len(features), width), dtype=bool)
        spans = np.zeros((len(features), width, 2), dtype=np.int64)
        for i, f in enumerate(features):
            offsets = f["offset_mapping"]
            inside = [j for j, o in enumerate(offsets) if o is not None]
            if inside:
                context[i, inside] = True
                spans[i, inside] = [offsets[j][:2] for j in inside]
        return cls([f["example_id"] for f in features], lengths, context, spans[..., 0], spans[..., 1],
                   [f.get("cls_index", 0) or 0 for f in features])


def _padded(logits, rows, lengths, width):
    """float64 [len(rows), width]: the logits of those windows, -inf beyond each window's length."""
    out = np.full((len(rows), width), -np.inf)
    if isinstance(logits, np.ndarray) and logits.ndim == 2:
        w = min(width, logits.shape[1])
        out[:, :w] = logits[rows, :w]
        out[np.arange(width)[None, :] >= lengths[:, None]] = -np.inf
    else:
        for r, (i, n) in enumerate(zip(rows, lengths)):
            out[r, :n] = np.asarray(logits[i][:n], dtype=np.float64)
    return out


def top_k(x, lengths, k, ordered=True):
    """[rows, min(k, width)] positions of the k largest values of each row's first `lengths` values,
    largest first; equal values: the later position first (the order of
    `np.argsort(row, kind="stable")[::-1][:k]`).  A row shorter than k ends with positions beyond its
    length.  argpartition finds the k largest; a row whose k-th value also occurs outside them, or
    with a non-finite value, is sorted whole.  `ordered=False`: the same positions, in any order
    (except in the rows sorted whole)."""
    rows, width = x.shape
    k = min(k, width)
    cand = np.argpartition(x, width - k, axis=1)[:, width - k:] if k < width else \
        np.broadcast_to(np.arange(width), (rows, width)).copy()
    real = np.arange(width)[None, :] < lengths[:, None]
    odd = (~np.isfinite(x) & real).any(axis=1)
    if k < width:
        kth = np.take_along_axis(x, cand, 1).min(axis=1, keepdims=True)
        odd |= ((x >= kth) & real).sum(axis=1) > k
    if ordered:
        cand.sort(axis=1)
        vals = np.take_along_axis(x, cand, 1)
        top = np.take_along_axis(cand, np.argsort(vals, axis=1, kind="stable")[:, ::-1], 1)
    else:
        top = cand
    for r in np.flatnonzero(odd):
        n = lengths[r]
        exact = np.argsort(x[r, :n], kind="stable")[::-1][:k]
        top[r, :len(exact)] = exact
        top[r, len(exact):] = n  # beyond the row: never in the context
    return top


def window_best_spans(start, end, context, n_best, max_answer_length, lengths):
    """Per window: (found, score, start token, end token) of the best span among the n_best x n_best
    candidates in the context with end >= start and at most max_answer_length tokens; equal scores:
    the earlier start candidate, then the earlier end candidate.  The logits are finite in the
    context (-inf marks positions that are not)."""
    found, score, s, e, ties = _best_spans(start, end, context, n_best, max_answer_length, lengths, False)
    if len(ties):  # the candidates' order decides between equal scores
        found[ties], score[ties], s[ties], e[ties], _ = _best_spans(
            start[ties], end[ties], context[ties], n_best, max_answer_length, lengths[ties], True)
    return found, score, s, e


def _best_spans(start, end, context, n_best, max_answer_length, lengths, ordered):
    """`window_best_spans` with the candidates in order (`ordered`) or not: then also the rows whose
    best score occurs more than once (their answer depends on the order)."""
    n = len(start)
    rows = np.arange(n)[:, None]
    s_top = top_k(start, lengths, n_best, ordered)
    e_top = top_k(end, lengths, n_best, ordered)
    s_val = np.where(context[rows, s_top], start[rows, s_top], -np.inf)
    e_val = np.where(context[rows, e_top], end[rows, e_top], -np.inf)
    score = s_val[:, :, None] + e_val[:, None, :]
    # end - start in [0, max_answer_length): one unsigned comparison
    span = e_top.astype(np.int32)[:, None, :] - s_top.astype(np.int32)[:, :, None]
    score[span.view(np.uint32) >= max_answer_length] = -np.inf
    flat = score.reshape(n, -1)
    best = flat.argmax(axis=1)  # the first of equal scores: start candidates in order, then end candidates
    r, k = rows[:, 0], e_top.shape[1]
    top = flat[r, best]
    found = top > -np.inf
    ties = np.zeros(0, dtype=np.int64) if ordered else \
        np.flatnonzero(found & ((flat == top[:, None]).sum(axis=1) > 1))
    return found, top, s_top[r, best // k], e_top[r, best % k], ties


def _first_per_group(rows, group, key, n_groups):
    """For each group, the one of `rows` (ascending) with the largest key, the earliest among equal
    keys; -1 for a group without rows."""
    order = np.lexsort((rows, -key, group))
    g = group[order]
    head = np.ones(len(order), dtype=bool)
    head[1:] = g[1:] != g[:-1]
    first = np.full(n_groups, -1, dtype=np.int64)
    first[g[head]] = rows[order[head]]
    return first


def _probabilities(logits, windows, rows, positions, null_answers):
    """softmax over each window's allowed tokens (the context, and CLS with null answers) of
    `logits`, at `positions` (0 where the position is not allowed)."""
    if not len(rows):
        return np.zeros(0)
    lengths = windows.lengths[rows]
    width = int(lengths.max())
    x = _padded(logits, rows, lengths, width)
    allowed = np.zeros((len(rows), width), dtype=bool)
    w = min(width, windows.context.shape[1])
    allowed[:, :w] = windows.context[rows, :w]
    allowed &= np.arange(width)[None, :] < lengths[:, None]
    r = np.arange(len(rows))
    if null_answers:
        allowed[r, windows.cls[rows]] = True
    top = np.where(allowed, x, -np.inf).max(axis=1, keepdims=True)
    e = np.where(allowed, np.exp(np.where(allowed, x - np.where(np.isfinite(top), top, 0.0), 0.0)), 0.0)
    total = e.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(allowed[r, positions], e[r, positions] / total, 0.0)


class Choices:
    """The answer chosen for each example, as arrays: `window` (-1: the example has no window),
    `null` (the null answer), `start` / `end` (token positions in that window; CLS for the null
    answer) and `score` (start + end logit; -inf without a window)."""

    def __init__(self, window, null, start, end, score):
        self.window, self.null, self.start, self.end, self.score = window, null, start, end, score

    def chars(self, windows):
        """(start, end) character offsets of each answer in its context (lists; meaningless where
        `null` is set)."""
        if not len(windows.lengths):
            return [0] * len(self.window), [0] * len(self.window)
        at = np.maximum(self.window, 0)
        first, _ = windows.chars(at, self.start)
        _, last = windows.chars(at, self.end)
        return first.tolist(), last.tolist()

    def texts(self, windows, contexts):
        """The answer text of each example, cut from its context; "" for the null answer."""
        first, last = self.chars(windows)
        return ["" if null else context[a:b]
                for context, null, a, b in zip(contexts, self.null.tolist(), first, last)]


def choose_answers(group, n_examples, windows, start_logits, end_logits, *, n_best=20, max_answer_length=30,
                   null_answers=False, null_threshold=0.0, chunk=2048):
    """`Choices` for examples 0..n_examples-1, `group[i]` being the example of window i (-1: none):
    the top n_best starts and ends of all windows at once (numpy), `chunk` windows at a time."""
    group = np.asarray(group, dtype=np.int64)
    keep = np.flatnonzero(group >= 0)
    n_win = len(windows.lengths)
    found = np.zeros(n_win, dtype=bool)
    score = np.full(n_win, -np.inf)
    span_s = np.zeros(n_win, dtype=np.int64)
    span_e = np.zeros(n_win, dtype=np.int64)
    null = np.full(n_win, np.inf)
    for b in range(0, len(keep), chunk):
        rows = keep[b:b + chunk]
        lengths = windows.lengths[rows]
        width = int(lengths.max(initial=0))
        if width == 0:
            continue
        s_log = _padded(start_logits, rows, lengths, width)
        e_log = _padded(end_logits, rows, lengths, width)
        context = windows.context[rows, :width] if width <= windows.context.shape[1] else \
            np.pad(windows.context[rows], ((0, 0), (0, width - windows.context.shape[1])))
        context = context & (np.arange(width)[None, :] < lengths[:, None])
        found[rows], score[rows], span_s[rows], span_e[rows] = window_best_spans(
            s_log, e_log, context, n_best, max_answer_length, lengths)
        cls = windows.cls[rows]
        r = np.arange(len(rows))
        null[rows] = s_log[r, cls] + e_log[r, cls]
    # per example: the best span over its windows (the earliest window among equal scores) and the
    # window most sure that there is an answer (the smallest null score, the earliest among equal)
    spans = keep[found[keep]]
    best_window = _first_per_group(spans, group[spans], score[spans], n_examples)
    null_window = _first_per_group(keep, group[keep], -null[keep], n_examples)

    # the answer of each example: its best span, or its null answer when no window has a span or
    # (null_answers) the null score beats the best span by more than null_threshold
    has_null = null_window >= 0
    use_null = (best_window < 0) | (null_answers & has_null & (null[null_window] - score[best_window] > null_threshold))
    window = np.where(use_null, null_window, best_window)
    at = np.maximum(window, 0)
    cls = windows.cls[at] if n_win else np.zeros(n_examples, dtype=np.int64)
    at_s = np.where(use_null, cls, span_s[at] if n_win else 0)
    at_e = np.where(use_null, cls, span_e[at] if n_win else 0)
    win_score = np.where(window < 0, -np.inf, np.where(use_null, null[at], score[at]) if n_win else -np.inf)
    return Choices(window, use_null, at_s, at_e, win_score)


def answers_from_windows(examples, windows, start_logits, end_logits, *, n_best=20, max_answer_length=30,
                         null_answers=False, null_threshold=0.0, chunk=2048):
    """`best_answers` on `Windows`."""
    ids = {}
    for ex in examples:
        ids.setdefault(ex["id"], len(ids))
    if not len(windows.lengths):
        return {ex["id"]: {"text": "", "start": None, "end": None, "score": float("-inf"), "probability": 0.0}
                for ex in examples}
    group = np.array([ids.get(i, -1) for i in windows.ids()], dtype=np.int64)
    c = choose_answers(group, len(ids), windows, start_logits, end_logits, n_best=n_best,
                       max_answer_length=max_answer_length, null_answers=null_answers,
                       null_threshold=null_threshold, chunk=chunk)
    some = np.flatnonzero(c.window >= 0)
    probability = np.zeros(len(ids))
    probability[some] = (_probabilities(start_logits, windows, c.window[some], c.start[some], null_answers)
                         * _probabilities(end_logits, windows, c.window[some], c.end[some], null_answers))
    char_start, char_end = c.chars(windows)
    null_text, probability, win_score = c.null.tolist(), probability.tolist(), c.score.tolist()
    answers = {}
    for ex in examples:
        code = ids[ex["id"]]
        if null_text[code]:
            answers[ex["id"]] = {"text": "", "start": None, "end": None,
                                 "score": win_score[code], "probability": probability[code]}
        else:
            start, stop = char_start[code], char_end[code]
            answers[ex["id"]] = {"text": ex["context"][start:stop], "start": start, "end": stop,
                                 "score": win_score[code], "probability": probability[code]}
    return answers


def best_answers(examples, features, start_logits, end_logits, *, n_best=20, max_answer_length=30,
                 null_answers=False, null_threshold=0.0):
    """The answer to every example from the logits of all its windows.

    `examples`: dicts with id and context.  `features`: dicts with example_id, offset_mapping
    (None outside the context) and cls_index (or `Windows`).  `start_logits[i]` / `end_logits[i]`:
    the (finite) logits of feature i (possibly padded beyond its length, e.g. with -100; padding is
    never in the context).  For each window, the n_best largest start and end logits (equal logits:
    the later token first) that lie in the context form the candidate spans with end >= start and at
    most max_answer_length tokens; the best start + end logit wins (equal scores: the earlier window,
    start candidate, end candidate).  Returns id -> {text, start, end, score (start+end logit),
    probability (start x end softmax over the window's context tokens, and CLS with null answers;
    summed in numpy's row order, so equal to a per-window softmax up to rounding)}; an empty
    text (start and end None) is the null answer: the CLS score of the window where it is smallest,
    chosen when no window has a span or, with null_answers, when it beats the best span by more
    than null_threshold.
    """
    if not isinstance(features, Windows):
        features = Windows.from_features(features)
    return answers_from_windows(examples, features, start_logits, end_logits, n_best=n_best,
                                max_answer_length=max_answer_length, null_answers=null_answers,
                                null_threshold=null_threshold)


# ---- the pipeline -----------------------------------------------------------------------------------
class ExtractiveQuestionAnsweringPipeline(Pipeline):
    """question + context -> {answer, score, start, end}; settings default to the training run's
    (config.json `qa_settings`): max_length, stride, n_best, max_answer_length, null_answers, null_threshold."""

    SETTINGS = ("max_length", "stride", "n_best", "max_answer_length", "null_answers", "null_threshold")

    def __call__(self, inputs=None, question=None, context=None, **kwargs):
        if inputs is None:
            inputs = {"question": question, "context": context}
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        settings = dict(getattr(self.model.config, "qa_settings", None) or {})
        settings.update({k: v for k, v in kwargs.items() if k in self.SETTINGS and v is not None})
        pre = {k: settings[k] for k in ("max_length", "stride") if k in settings}
        post = {k: settings[k] for k in ("n_best", "max_answer_length", "null_answers", "null_threshold")
                if k in settings}
        return pre, {}, post

    def preprocess(self, inputs, max_length=384, stride=128):
        if not isinstance(inputs, dict) or not inputs.get("question") or not inputs.get("context"):
            raise ValueError("question answering needs a question and a context")
        batch = {"id": ["0"], "question": [inputs["question"]], "context": [inputs["context"]]}
        enc = window_features(batch, self.tokenizer, max_length, stride)
        names = [k for k in self.tokenizer.model_input_names if k in enc]
        model_inputs = self.tokenizer.pad({k: enc[k] for k in names}, return_tensors="pt")
        features = [{"example_id": "0", "offset_mapping": o, "cls_index": c}
                    for o, c in zip(enc["offset_mapping"], enc["cls_index"])]
        return {"model_inputs": dict(model_inputs), "features": features, "context": inputs["context"]}

    def _forward(self, inputs):
        out = self.model(**inputs["model_inputs"])
        return {"start_logits": out.start_logits, "end_logits": out.end_logits, "features": inputs["features"],
                "context": inputs["context"]}

    def postprocess(self, outputs, n_best=20, max_answer_length=30, null_answers=False, null_threshold=0.0):
        answer = best_answers([{"id": "0", "context": outputs["context"]}], outputs["features"],
                              outputs["start_logits"].float().cpu().numpy(),
                              outputs["end_logits"].float().cpu().numpy(), n_best=n_best,
                              max_answer_length=max_answer_length, null_answers=null_answers,
                              null_threshold=null_threshold)["0"]
        return {"answer": answer["text"], "score": answer["probability"], "start": answer["start"],
                "end": answer["end"]}
