"""Scores of generated text, computed by the reference libraries.

- Translation: sacreBLEU's corpus BLEU and chrF (its default 13a tokenisation, one or several
  references per example), as the course reports them.
- Summarization: rouge-score's ROUGE-1 / ROUGE-2 / ROUGE-L / ROUGE-Lsum F-measure x 100 with the
  Porter stemmer, averaged over examples.  ROUGE-Lsum needs one sentence per line: sentences come from
  pysbd, a rule-based splitter that ships its rules (nltk's punkt model would need a download).
"""

from __future__ import annotations

from functools import lru_cache

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def bleu_chrf(predictions: list[str], references: list) -> dict:
    """Corpus BLEU and chrF.  `references[i]` is a string or a list of strings (several references)."""
    import sacrebleu

    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    n_refs = max((len(r) for r in refs), default=1)
    if any(len(r) != n_refs for r in refs):
        raise ValueError("every example needs the same number of references")
    streams = [[r[k] for r in refs] for k in range(n_refs)]  # sacreBLEU wants one stream per reference
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(predictions, streams)
    c = chrf.corpus_score(predictions, streams)
    return {"bleu": float(b.score), "chrf": float(c.score),
            "bleu_details": {"precisions": [float(p) for p in b.precisions], "bp": float(b.bp),
                             "sys_len": int(b.sys_len), "ref_len": int(b.ref_len),
                             "signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}}


@lru_cache(maxsize=8)
def _segmenter(language: str):
    import pysbd

    try:
        return pysbd.Segmenter(language=language, clean=False)
    except ValueError as exc:
        from nlpfit import NlpfitError

        raise NlpfitError(f"--sentence-language {language}: pysbd has no rules for it ({exc})") from None


def sentences(text: str, language: str = "en") -> list[str]:
    """Sentences of a text (pysbd), stripped, empty ones dropped."""
    if not text.strip():
        return []
    return [s.strip() for s in _segmenter(language).segment(text) if s.strip()]


def one_sentence_per_line(text: str, language: str = "en") -> str:
    return "\n".join(sentences(text, language))


def rouge(predictions: list[str], references: list[str], language: str = "en") -> dict:
    """Mean ROUGE F-measure x 100 (stemmed); Lsum on pysbd sentences, one per line."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(one_sentence_per_line(ref, language), one_sentence_per_line(pred, language))
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    n = max(len(predictions), 1)
    return {key: 100.0 * total / n for key, total in totals.items()}


def lead(text: str, n: int = 3, language: str = "en") -> str:
    """The first `n` sentences of a text, one per line (the lead-3 baseline of news summarization)."""
    return "\n".join(sentences(text, language)[:n])
