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
def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def best_answers(examples, features, start_logits, end_logits, *, n_best=20, max_answer_length=30,
                 null_answers=False, null_threshold=0.0):
    """The answer to every example from the logits of all its windows.

    `examples`: dicts with id and context.  `features`: dicts with example_id, offset_mapping
    (None outside the context) and cls_index.  `start_logits[i]` / `end_logits[i]`: the logits of
    feature i (possibly padded beyond its length, e.g. with -100; padding is never in the context).
    Returns id -> {text, start, end, score (start+end logit), probability}; an empty text (start
    and end None) is the null answer.
    """
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
            s_prob = np.zeros(n)
            e_prob = np.zeros(n)
            s_prob[allowed], e_prob[allowed] = _softmax(s_log[allowed]), _softmax(e_log[allowed])
            null_score = float(s_log[cls] + e_log[cls])
            if null is None or null_score < null["score"]:  # the window most sure that there is an answer
                null = {"text": "", "start": None, "end": None, "score": null_score,
                        "probability": float(s_prob[cls] * e_prob[cls])}
            s_top = [j for j in np.argsort(s_log)[::-1][:n_best] if offsets[j] is not None]
            e_top = [j for j in np.argsort(e_log)[::-1][:n_best] if offsets[j] is not None]
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
        elif null_answers and null is not None and null["score"] - best["score"] > null_threshold:
            best = null
        answers[ex["id"]] = best
    return answers


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
