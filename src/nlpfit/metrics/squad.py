"""SQuAD exact match and F1, as the official evaluation scripts (v1.1 and v2.0) define them.

The scores come from `torchmetrics.functional.text.squad`, a port of the official script: the
text is lowercased, punctuation and the articles a/an/the are removed and whitespace collapsed;
exact match compares the normalised strings, F1 the bags of their tokens; each question scores the
maximum over its gold answers.  What the v2.0 script adds is done here: a question without a gold
answer is scored against the empty answer (right only when the prediction is empty too; its
torchmetrics F1 is then 1), and the scores are also given for the questions with an answer
(HasAns) and without one (NoAns).  Scores are percentages, as in the official scripts.
"""

from __future__ import annotations


def _squad(predictions: dict[str, str], references: dict[str, list[str]], ids: list[str]) -> dict:
    from torchmetrics.functional.text import squad

    if not ids:
        return {"exact_match": 0.0, "f1": 0.0, "total": 0}
    preds = [{"id": i, "prediction_text": predictions.get(i, "")} for i in ids]
    target = [{"id": i, "answers": {"text": [g for g in references[i] if g.strip()] or [""]}} for i in ids]
    scores = squad(preds, target)
    return {"exact_match": float(scores["exact_match"]), "f1": float(scores["f1"]), "total": len(ids)}


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict:
    """exact_match, f1 (percentages) and total over `references` (id -> gold answer texts).

    A question without a prediction counts as answered with the empty string.  When some questions
    have no gold answer, HasAns_* and NoAns_* give the scores of each group, as in SQuAD 2.0.
    """
    ids = list(references)
    result = _squad(predictions, references, ids)
    has = [i for i in ids if any(g.strip() for g in references[i])]
    if len(has) < len(ids):
        no = [i for i in ids if not any(g.strip() for g in references[i])]
        for prefix, group in (("HasAns_", has), ("NoAns_", no)):
            result.update({prefix + k: v for k, v in _squad(predictions, references, group).items()})
    return result


def score_one(prediction: str, golds: list[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction, each in [0, 1]."""
    s = _squad({"q": prediction}, {"q": list(golds)}, ["q"])
    return s["exact_match"] / 100, s["f1"] / 100
