"""Summarization: the course's Seq2SeqTrainer evaluation (predict_with_generate, its compute_metrics
with ROUGE) against `nlpfit evaluate`, and one `model.generate` per text against `nlpfit predict`, fp32
and bf16, on a from-scratch Marian-style model trained by `nlpfit train summarization` on its offline
default (standard-library docstrings: body -> summary line), scored on the run's validation split
(bench/recipes/seq2seq_common.py says how).

Where the plain recipe departs from the course: `evaluate.load("rouge")` cannot download its script
offline, so compute_metrics calls rouge-score as that metric does (RougeScorer with the stemmer, a
BootstrapAggregator, the mid F-measure); nltk's punkt model for the one-sentence-per-line of ROUGE-Lsum
cannot be downloaded either, so sentences come from pysbd, the splitter nlpfit uses.  The course's
targets are truncated at 30 tokens; here at the run's --max-target-length, as nlpfit's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import Row
from recipes import seq2seq_common as s2s


def compute_metrics_for(tokenizer):
    from rouge_score import rouge_scorer, scoring

    from nlpfit.metrics.generation import sentences

    def sent_tokenize(text):
        return sentences(text)

    def compute_metrics(eval_pred):
        predictions, labels = eval_pred
        predictions = np.where(predictions != -100, predictions, tokenizer.pad_token_id)
        # Decode generated summaries into text
        decoded_preds = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        # Replace -100 in the labels as we can't decode them
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        # Decode reference summaries into text
        decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
        # ROUGE expects a newline after each sentence
        decoded_preds = ["\n".join(sent_tokenize(pred.strip())) for pred in decoded_preds]
        decoded_labels = ["\n".join(sent_tokenize(label.strip())) for label in decoded_labels]
        # Compute ROUGE scores (what evaluate's rouge does with use_stemmer=True)
        rouge_types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=True)
        aggregator = scoring.BootstrapAggregator()
        for ref, pred in zip(decoded_labels, decoded_preds):
            aggregator.add_scores(scorer.score(ref, pred))
        result = aggregator.aggregate()
        # Extract the median scores
        result = {key: value.mid.fmeasure * 100 for key, value in result.items()}
        return {k: round(v, 4) for k, v in result.items()}

    return compute_metrics


def quality(metrics: dict, prefix: str) -> str:
    return f"ROUGE-L {metrics[prefix + 'rougeL']:.2f}, ROUGE-Lsum {metrics[prefix + 'rougeLsum']:.2f}"


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    return s2s.section("summarization", steps=40 if quick else 200, limit=64 if quick else 256,
                       n_predict=16 if quick else 64, repeat=repeat, tmp=tmp,
                       compute_metrics_for=compute_metrics_for, quality=quality)


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    return s2s.profile_task("summarization", steps=5 if quick else 20, limit=64, tmp=tmp)
