"""Translation: the course's Seq2SeqTrainer evaluation (predict_with_generate, its compute_metrics)
against `nlpfit evaluate`, and one `model.generate` per text against `nlpfit predict`, fp32 and bf16, on
a from-scratch Marian-style model trained by `nlpfit train translation` on its offline default (Django's
French gettext catalogs), scored on the run's validation split (bench/recipes/seq2seq_common.py says how).

Where the plain recipe departs from the course: `evaluate.load("sacrebleu")` cannot download its
script offline, so compute_metrics calls sacrebleu.corpus_bleu with the arguments that metric passes
(smooth_method="exp", tokenize="13a", references transposed into streams).  Its references are the
decoded labels, as in the course; nlpfit scores against the raw targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import Row
from recipes import seq2seq_common as s2s


def compute_metrics_for(tokenizer):
    import sacrebleu

    def compute_metrics(eval_preds):
        preds, labels = eval_preds
        # In case the model returns more than the prediction logits
        if isinstance(preds, tuple):
            preds = preds[0]
        preds = np.where(preds != -100, preds, tokenizer.pad_token_id)  # the Trainer pads across batches with -100
        decoded_preds = tokenizer.batch_decode(preds, skip_special_tokens=True)
        # Replace -100s in the labels as we can't decode them
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
        # Some simple post-processing
        decoded_preds = [pred.strip() for pred in decoded_preds]
        decoded_labels = [[label.strip()] for label in decoded_labels]
        # evaluate's sacrebleu: one reference stream per reference position
        streams = [[refs[i] for refs in decoded_labels] for i in range(len(decoded_labels[0]))]
        result = sacrebleu.corpus_bleu(decoded_preds, streams, smooth_method="exp", smooth_value=None, force=False,
                                       lowercase=False, tokenize="13a", use_effective_order=False)
        return {"bleu": result.score}

    return compute_metrics


def quality(metrics: dict, prefix: str) -> str:
    return f"BLEU {metrics[prefix + 'bleu']:.2f}"


def bench(quick: bool, repeat: int, tmp: Path) -> list[Row]:
    return s2s.section("translation", steps=120 if quick else 300, limit=0,
                       n_predict=24 if quick else 86, repeat=repeat, tmp=tmp,
                       compute_metrics_for=compute_metrics_for, quality=quality)


def profile(quick: bool, tmp: Path) -> list[tuple[str, object]]:
    return s2s.profile_task("translation", steps=5 if quick else 20, limit=64, tmp=tmp)
