"""Metrics computed with the field's libraries: seqeval (`tagging`), sacreBLEU and rouge-score
(`generation`), the official SQuAD scores through torchmetrics (`squad`)."""


def summary(metrics: dict) -> dict:
    """The flat figures of a metrics dict (per-type tables and other nested values left out)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
