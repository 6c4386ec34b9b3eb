"""Scores of tag sequences: seqeval's entity-level scores for BIO tags, per-tag scores otherwise."""

from __future__ import annotations


def score_tags(y_true: list[list[str]], y_pred: list[list[str]], is_bio: bool) -> dict:
    """seqeval entity scores for BIO tags; token-level scores per tag otherwise."""
    if is_bio:
        from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                        "f1": float(v["f1-score"]), "support": int(v["support"])}
                    for k, v in sorted(report.items()) if not k.endswith(" avg")}
        return {"precision": float(precision_score(y_true, y_pred, zero_division=0)),
                "recall": float(recall_score(y_true, y_pred, zero_division=0)),
                "f1": float(f1_score(y_true, y_pred, zero_division=0)),
                "accuracy": float(accuracy_score(y_true, y_pred)),
                "per_type": per_type}
    from sklearn.metrics import precision_recall_fscore_support

    flat_t = [t for s in y_true for t in s]
    flat_p = [t for s in y_pred for t in s]
    names = sorted(set(flat_t))
    p, r, f, s = precision_recall_fscore_support(flat_t, flat_p, labels=names, zero_division=0)
    acc = sum(a == b for a, b in zip(flat_t, flat_p)) / max(len(flat_t), 1)
    mp, mr, mf, _ = precision_recall_fscore_support(flat_t, flat_p, average="micro", zero_division=0)
    return {"precision": float(mp), "recall": float(mr), "f1": float(mf), "accuracy": float(acc),
            "per_type": {n: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                         for n, a, b, c, d in zip(names, p, r, f, s)}}


def entity_type(tag: str) -> str:
    """B-PER / I-PER -> PER; O and plain tags stay as they are."""
    return tag[2:] if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES" else tag


def type_confusion(y_true: list[list[str]], y_pred: list[list[str]]) -> dict:
    """{"labels": types, "matrix": counts[gold][predicted]} over words, by entity type (B-/I- merged)."""
    pairs = [(entity_type(t), entity_type(p)) for ts, ps in zip(y_true, y_pred) for t, p in zip(ts, ps)]
    labels = sorted({x for pair in pairs for x in pair}, key=lambda t: (t != "O", t))
    index = {t: i for i, t in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for t, p in pairs:
        matrix[index[t]][index[p]] += 1
    return {"labels": labels, "matrix": matrix}
