"""Summarization (the course's Amazon reviews chapter) on the sequence-to-sequence core of
`tasks/seq2seq.py`: --text-column -> --summary-column, scored with rouge-score's ROUGE-1/2/L/Lsum
(stemmed, Lsum on pysbd sentences).  `nlpfit baseline lead3` scores the first three sentences.
Offline default data: standard-library docstrings (body -> summary line, PEP 257).
"""

from __future__ import annotations

from dataclasses import dataclass

from nlpfit import NlpfitError
from nlpfit.config import opt
from nlpfit.tasks.seq2seq import Seq2Seq, Seq2SeqOptions, text_value


@dataclass(frozen=True)
class SummarizationOptions(Seq2SeqOptions):
    max_source_length: int = opt(512, "Truncate sources to this many tokens.", min=1)
    max_target_length: int = opt(64, "Truncate targets (labels) to this many tokens.", min=1)
    text_column: str = opt("text", "Column of texts to summarize (e.g. review_body).")
    summary_column: str = opt("summary", "Column of reference summaries (e.g. review_title).")
    sentence_language: str = opt("en", "Language of pysbd's sentence rules, for ROUGE-Lsum and lead-3.")


class Summarization(Seq2Seq):
    name = "summarization"
    pipeline = "summarization"
    Options = SummarizationOptions
    main_metric = "rougeL"
    output_key = "summary_text"
    table_keys = ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len")

    def default_data(self) -> list[str]:
        """Python standard-library docstrings: body -> one-line summary (PEP 257)."""
        from nlpfit.data.docstrings import docstring_corpus

        return [docstring_corpus()]

    def check_columns(self, columns, where):
        o = self.opts
        missing = [(c, f) for c, f in ((o.text_column, "--text-column"), (o.summary_column, "--summary-column"))
                   if c not in columns]
        if missing:
            raise NlpfitError(f"{where}: no column {missing[0][0]!r} (set {missing[0][1]}); "
                              f"columns are {', '.join(columns)}")

    def pair_of(self, row, where, columns):
        o = self.opts
        return (text_value(row.get(o.text_column), where, o.text_column),
                text_value(row.get(o.summary_column), where, o.summary_column))

    def score(self, predictions, references):
        from nlpfit.metrics.generation import rouge

        return rouge(predictions, references, self.opts.sentence_language)

    def input_keys(self):
        return ["text", self.opts.text_column]

    def card_data(self, facts, model, tokenizer):
        return {"text_column": self.opts.text_column, "summary_column": self.opts.summary_column}
