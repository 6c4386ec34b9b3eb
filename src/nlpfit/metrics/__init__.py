"""Metrics computed with the field's libraries (sacreBLEU, rouge-score, seqeval …)."""
