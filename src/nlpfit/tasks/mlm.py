"""Masked-language-model domain adaptation, as in the course's chapter on fine-tuning a masked LM.

1. Read in-domain text: a hub dataset with a text column (imdb, with `--train-split train
   --train-split unsupervised`), `.txt` files (one document per line, or `--document-per-file`
   for folders of documents), JSON Lines / CSV / Parquet with `--text-column`.  Without `--data`,
   the prose of the Python documentation shipped with CPython (`python-docs`).
2. Tokenize keeping word ids, concatenate the documents and cut the stream into blocks of
   `--chunk-size` tokens (never above the model's maximum), dropping the remainder.
   `--train-size` / `--test-size` downsample the blocks (the course uses 10000 / 1000).
3. Mask training batches anew every time: `--masking random` masks tokens
   (DataCollatorForLanguageModeling, `--mlm-probability` 0.15), `--masking whole-word` masks all
   the sub-tokens of chosen words together (probability 0.2).  Masked tokens become [MASK] 80% of
   the time, a random token 10%, stay unchanged 10% (`--mask-only`: always [MASK]).
4. Mask the evaluation blocks ONCE, with a fixed seed per block, and store them: perplexity
   = exp(mean cross-entropy over the masked tokens) is then comparable across epochs, runs,
   engines and process counts.  It is reported before training and after every epoch.
5. A checkpoint without a masked-LM head (a bare encoder such as the packaged MiniLM) gets a new
   head whose decoder is tied to the input embeddings.
6. Predict with the fill-mask pipeline: `nlpfit predict OUT "This is a great [MASK]." --top-k 5`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from nlpfit import NlpfitError
from nlpfit.config import opt
from nlpfit.data.text import PYTHON_DOCS, block_size, chunk_corpus, load_text
from nlpfit.log import info
from nlpfit.models import MINILM, load_model, load_tokenizer, resolve_model
from nlpfit.tasks import base
from nlpfit.tasks.base import Evaluation, Task

#: masking probability when --mlm-probability is not given
DEFAULT_PROBABILITY = {"random": 0.15, "whole-word": 0.2}
#: seed of the evaluation masks: the same for every run, whatever --seed is
EVAL_MASK_SEED = 20_240_607
#: mask spellings a user may write for the model's own mask token
MASK_SPELLINGS = ("[MASK]", "<mask>")


@dataclass(frozen=True)
class Options:
    text_column: str = opt("text", "Column of text (JSON Lines/CSV/Parquet/hub data).")
    document_per_file: bool = opt(False, "--data folders hold one document per file (sub-folders train/, dev/, "
                                         "test/ are splits); otherwise a .txt file holds one document per line.")
    train_split: list = opt([], "Source split(s) used as training text (default: train); repeat, e.g. "
                                "--train-split train --train-split unsupervised for imdb.", multiple=True)
    chunk_size: int = opt(128, "Tokens per block (capped at the model's maximum).", min=1)
    masking: str = opt("random", "Mask single tokens, or all sub-tokens of a word together.",
                       choices=("random", "whole-word"))
    mlm_probability: float | None = opt(None, "Fraction of tokens (random) or words (whole-word) masked "
                                              "[default: 0.15 for random, 0.2 for whole-word].", above=0, below=1)
    mask_only: bool = opt(False, "Replace every masked token by the mask token (default: 80% mask token, "
                                 "10% random token, 10% unchanged).")
    train_size: int = opt(0, "Keep N random training blocks (seeded by --split-seed; 0: all; the course: 10000).",
                          min=0)
    test_size: int = opt(0, "Keep N random blocks of each evaluation split (0: all; the course: 1000).", min=0)


@dataclass(frozen=True)
class PredictOptions(base.PredictOptions):
    top_k: int = opt(5, "Number of candidates (fill-mask; at most the vocabulary).", min=1)


@dataclass(frozen=True)
class Facts(base.Facts):
    #: tokens per block (--chunk-size capped at the model's maximum), known once preprocessed
    block: int = 0


# ---- masking ----------------------------------------------------------------------------------------
def mask_blocks(input_ids, word_ids, probability: float, whole_word: bool, mask_id: int, vocab_size: int,
                special_ids, mask_only: bool = False, generator=None):
    """(masked input_ids, labels) for a batch of blocks (LongTensors [batch, length]).

    Random: each maskable token is chosen with `probability`.  Whole word: each word (same
    `word_ids` value in a row) is chosen with `probability`, and all its tokens with it.
    Special tokens (word id -1, or a special token id) are never chosen.  Chosen tokens get
    their id as label (others -100) and become the mask token 80% of the time, a random token
    10%, unchanged 10% (`mask_only`: always the mask token).
    """
    import torch

    maskable = (word_ids >= 0) & ~torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype))
    if whole_word:
        n_words = int(word_ids.max()) + 1 if word_ids.numel() else 0
        chosen_words = torch.rand((input_ids.shape[0], max(n_words, 1)), generator=generator) < probability
        chosen = chosen_words.gather(1, word_ids.clamp(min=0)) & maskable
    else:
        chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    if mask_only:
        inputs[chosen] = mask_id
        return inputs, labels
    draw = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (draw < 0.8)] = mask_id
    random_tokens = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[random_tokens] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_tokens]
    return inputs, labels


class WholeWordMaskCollator:
    """Stacks blocks and masks whole words, from the `word_ids` that chunking stored."""

    #: columns the engines must pass through although the model does not take them
    input_columns = ("word_ids",)

    def __init__(self, tokenizer, probability: float, mask_only: bool):
        self.tokenizer, self.probability, self.mask_only = tokenizer, probability, mask_only

    def __call__(self, features: list[dict]) -> dict:
        import torch

        batch = {k: torch.tensor([f[k] for f in features]) for k in features[0]
                 if k in ("input_ids", "attention_mask", "token_type_ids")}
        word_ids = torch.tensor([f["word_ids"] for f in features])
        tok = self.tokenizer
        batch["input_ids"], batch["labels"] = mask_blocks(
            batch["input_ids"], word_ids, self.probability, True, tok.mask_token_id, len(tok), tok.all_special_ids,
            self.mask_only)
        return batch


def masked_logits(model, batch):
    """(logits [n, vocab], labels [n], row of each) for the n masked tokens of a batch, the vocabulary
    projection applied at those positions only (`inference.labelled_logits`)."""
    from nlpfit.inference import labelled_logits

    return labelled_logits(model, {k: v for k, v in batch.items() if k != "labels"}, batch["labels"])


def masked_lm_loss(model, batch):
    """Cross-entropy over the masked tokens, with vocabulary logits computed only there."""
    import torch

    logits, labels, _ = masked_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


class MaskedLM(Task):
    name = "fill-mask"
    pipeline = "fill-mask"
    Options = Options
    PredictOptions = PredictOptions
    Facts = Facts
    # perplexity before training is the baseline of domain adaptation: always measure it
    defaults = {"eval_before": True}
    main_metric = "perplexity"
    max_batch_padding = 0.25
    greater_is_better = False

    @property
    def probability(self) -> float:
        p = self.opts.mlm_probability
        p = DEFAULT_PROBABILITY[self.opts.masking] if p is None else p
        if not 0 < p < 1:
            raise NlpfitError(f"--mlm-probability {p}: must be between 0 and 1")
        return p

    # ---- 1. data ------------------------------------------------------------------------------
    def default_data(self) -> list[str]:
        return [PYTHON_DOCS]

    def default_model(self) -> str:
        return MINILM

    def load_data(self, trained=None):
        cfg, o = self.cfg, self.opts
        self.probability  # check --mlm-probability before reading anything
        raw = load_text(cfg.data, text_column=o.text_column, document_per_file=o.document_per_file,
                        config=cfg.data_config, train_splits=list(o.train_split), validation=cfg.validation_split,
                        test=cfg.test_split, seed=cfg.split_seed, require_train=trained is None)
        info("data: " + ", ".join(f"{s} {len(d)} documents" for s, d in raw.items()))
        return raw, Facts()

    # ---- 2. model and features ----------------------------------------------------------------
    def build(self, raw, facts):
        from transformers import AutoModelForMaskedLM

        path = resolve_model(self.cfg.model)
        tokenizer = load_tokenizer(path)
        if tokenizer.mask_token is None:
            raise NlpfitError(f"--model {self.cfg.model}: its tokenizer has no mask token, so it cannot be "
                              "trained as a masked LM (use an encoder such as BERT or RoBERTa)")
        if self.opts.masking == "whole-word" and not tokenizer.is_fast:
            raise NlpfitError(f"--masking whole-word: --model {self.cfg.model} has no fast tokenizer (word ids)")
        model, loading = _quietly(load_model, AutoModelForMaskedLM, path, "masked-LM", output_loading_info=True)
        prefix = model.base_model_prefix + "."
        new_head = sorted(k for k in loading["missing_keys"] if not k.startswith(prefix))
        if new_head:
            if not model.config.tie_word_embeddings:
                model.config.tie_word_embeddings = True
                model.tie_weights()
            tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
            info(f"--model {self.cfg.model} has no masked-LM head: initialised a new one "
                 f"({len(new_head)} tensors{', decoder tied to the input embeddings' if tied else ''})")
        return model, tokenizer

    def load_trained(self, out_dir: str):
        from transformers import AutoModelForMaskedLM

        return (load_model(AutoModelForMaskedLM, out_dir, "masked-LM", option=None),
                load_tokenizer(out_dir, option=None))

    def preprocess(self, raw, tokenizer, model_config, facts, *, training):
        """Blocks of every split; with `training` the train split stays unmasked (masked anew in
        every batch by the collator), every other split is masked once (`mask_eval`)."""
        import datasets

        o = self.opts
        size = block_size(o.chunk_size, tokenizer, model_config)
        features = datasets.DatasetDict()
        for split, ds in raw.items():
            blocks = chunk_corpus(ds, tokenizer, size, desc=f"chunking {split}")
            is_train = split == "train" and training
            n = o.train_size if is_train else o.test_size
            if 0 < n < len(blocks):
                # flatten: the engines read lengths from the Arrow table, not through an indices mapping
                blocks = blocks.shuffle(seed=self.cfg.split_seed).select(range(n)).flatten_indices()
            if len(blocks) == 0:
                raise NlpfitError(f"--data: the {split} split has fewer than {size} tokens, not one block "
                                  "(add text or lower --chunk-size)")
            if not is_train:  # evaluation data, including a file given to `nlpfit evaluate`
                blocks = self.mask_eval(blocks, tokenizer)
            features[split] = blocks
        info("blocks of %d tokens: " % size + ", ".join(f"{s} {len(d)}" for s, d in features.items())
             + f"; masking {o.masking} p={self.probability}" + (" mask-only" if o.mask_only else ""))
        return features, dataclasses.replace(facts, block=size)

    def mask_eval(self, blocks, tokenizer):
        """Mask an evaluation split once: block i always gets the masks of generator seed (S, i)."""
        import torch

        p, whole = self.probability, self.opts.masking == "whole-word"

        def mask(batch, indices):
            ids, labels = [], []
            for tokens, words, i in zip(batch["input_ids"], batch["word_ids"], indices):
                g = torch.Generator().manual_seed(EVAL_MASK_SEED + i)
                x, y = mask_blocks(torch.tensor([tokens]), torch.tensor([words]), p, whole, tokenizer.mask_token_id,
                                   len(tokenizer), tokenizer.all_special_ids, self.opts.mask_only, g)
                ids.append(x[0].tolist())
                labels.append(y[0].tolist())
            return {"input_ids": ids, "labels": labels}

        return blocks.map(mask, batched=True, with_indices=True, desc="masking evaluation blocks")

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForLanguageModeling

        if self.opts.masking == "whole-word":
            return WholeWordMaskCollator(tokenizer, self.probability, self.opts.mask_only)
        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=self.probability,
                                               mask_replace_prob=1.0 if self.opts.mask_only else 0.8,
                                               random_replace_prob=0.0 if self.opts.mask_only else 0.1)

    def eval_collator(self, tokenizer, model):
        from transformers import default_data_collator

        return default_data_collator  # the blocks are masked already, and all of one length

    def training_arguments(self) -> dict:
        # Trainer passes only the model's inputs and label columns to the collator: whole-word
        # masking also needs the word ids
        return {"label_names": ["labels", "word_ids"]} if self.opts.masking == "whole-word" else {}

    # ---- 3. loss and evaluation: vocabulary logits only where a token is masked ----------------
    def loss_function(self, tokenizer):
        return masked_lm_loss

    def eval_step(self, model, batch):
        import torch

        logits, labels, rows = masked_logits(model, batch)
        token_loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
        n = batch["labels"].shape[0]
        loss_sum = torch.zeros(n, device=token_loss.device).index_add_(0, rows, token_loss)
        return {"loss_sum": loss_sum, "n_tokens": (batch["labels"] != -100).sum(dim=1)}

    def compute_metrics(self, outputs, features, raw, facts, tokenizer):
        total = math.fsum(float(x) for x in outputs["loss_sum"])
        n = int(sum(int(x) for x in outputs["n_tokens"]))
        loss = total / n if n else float("nan")
        return Evaluation({"loss": loss, "perplexity": perplexity(loss), "masked_tokens": n})

    # ---- 4. prediction ------------------------------------------------------------------------
    def example_inputs(self, raw, n):
        """Evaluation texts cut to at most 40 words, with the middle word written as [MASK]."""
        out = []
        for text in raw["text"]:
            words = text.split()[:40]
            if len(words) >= 4:
                words[len(words) // 2] = "[MASK]"
                out.append(" ".join(words))
            if len(out) == n:
                break
        return out

    def check_inputs(self, out_dir, inputs, popts):
        masked_texts(inputs, load_tokenizer(out_dir, option=None), popts.top_k)

    def load_predictor(self, out_dir):
        from transformers import pipeline

        from nlpfit.inference import inference_device

        model, tokenizer = self.load_trained(out_dir)
        return pipeline("fill-mask", model=model, tokenizer=tokenizer, device=inference_device(),
                        trust_remote_code=False)

    def predict_with(self, predictor, inputs, popts):
        """The `top_k` best fillers of each mask; texts may write [MASK] or <mask> for the model's mask."""
        pipe = predictor  # the pipeline load_predictor made: its model and tokenizer
        tokenizer = pipe.tokenizer
        texts = masked_texts(inputs, tokenizer, popts.top_k)
        for text, result in zip(texts, fill_masks(pipe.model, tokenizer, texts, popts.batch_size or 1,
                                                  popts.precision, popts.top_k, self.max_batch_padding)):
            per_mask = result if result and isinstance(result[0], list) else [result]
            candidates = [[{"sequence": _strip_specials(c["sequence"], tokenizer), "token": c["token_str"],
                            "score": round(float(c["score"]), 4)}
                           for c in mask_result] for mask_result in per_mask]
            yield {"text": text, "predictions": candidates[0] if len(candidates) == 1 else candidates}

    def card_data(self, facts, model, tokenizer):
        return {"chunk_size": facts.block or self.opts.chunk_size, "masking": self.opts.masking,
                "mlm_probability": self.probability, "mask_only": self.opts.mask_only}


def masked_texts(inputs: list, tokenizer, top_k: int) -> list[str]:
    """The texts with every spelling of the mask written as the model's mask token; each must have one."""
    if top_k < 1:
        raise NlpfitError(f"--top-k {top_k}: must be at least 1")
    if top_k > len(tokenizer):
        raise NlpfitError(f"--top-k {top_k}: more candidates than the model's vocabulary ({len(tokenizer)} tokens)")
    mask = tokenizer.mask_token
    texts = []
    for n, text in enumerate(inputs, 1):
        if not isinstance(text, str):
            raise NlpfitError(f"input {n}: expected a text, got {type(text).__name__}")
        for spelling in MASK_SPELLINGS:
            text = text.replace(spelling, mask)
        if mask not in text:
            raise NlpfitError(f"input {n} has no mask token: write {mask} where the missing word goes")
        texts.append(text)
    return texts


def fill_masks(model, tokenizer, texts: list[str], batch_size: int, precision: str = "fp32", top_k: int = 5,
               max_padding: float | None = None) -> list:
    """What pipeline("fill-mask") returns for each text (a list of candidates, or one list per mask when a
    text has several), computed in batches of texts of similar length with the vocabulary projection
    applied at the masked positions only (`masked_logits`): the fillers, scores and sequences of the
    pipeline on each text alone."""
    import numpy as np
    import torch

    from nlpfit.inference import autocast, batches_by_length, weight_copies

    if not texts:  # an empty --input file
        return []
    encoded = tokenizer(texts)["input_ids"]
    mask_id, pad_id = tokenizer.mask_token_id, tokenizer.pad_token_id
    device = model.device
    results: list = [None] * len(texts)
    with weight_copies(precision, model):  # bf16 copies of the linear weights, once for all batches
        for chunk in batches_by_length([len(ids) for ids in encoded], batch_size, max_padding):
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in batch.items()}
            ids = inputs["input_ids"]
            inputs["labels"] = ids.masked_fill(ids != mask_id, -100)
            with torch.inference_mode(), autocast(precision, device):
                logits, _, rows = masked_logits(model, inputs)
            values, predictions = logits.float().softmax(dim=-1).topk(top_k)
            values, predictions, rows = values.tolist(), predictions.tolist(), rows.tolist()
            per_row: dict[int, list] = {}
            for k, row in enumerate(rows):
                per_row.setdefault(row, []).append(k)
            for r, i in enumerate(chunk):
                tokens = np.asarray(encoded[i])
                positions = np.flatnonzero(tokens == mask_id)
                single = len(positions) == 1
                result = []
                for position, k in zip(positions, per_row[r]):
                    candidates = []
                    for v, p in zip(values[k], predictions[k]):
                        filled = tokens.copy()
                        filled[position] = p
                        filled = filled[filled != pad_id]
                        candidates.append({"score": v, "token": p, "token_str": tokenizer.decode([p]),
                                           "sequence": tokenizer.decode(filled, skip_special_tokens=single)})
                    result.append(candidates)
                results[i] = result[0] if single else result
    return results


def _strip_specials(sequence: str, tokenizer) -> str:
    """The pipeline keeps [CLS] … [SEP] in the sequences of a text with several masks: drop them."""
    for token in (tokenizer.cls_token, tokenizer.bos_token):
        if token and sequence.startswith(token):
            sequence = sequence[len(token):].lstrip()
    for token in (tokenizer.sep_token, tokenizer.eos_token):
        if token and sequence.endswith(token):
            sequence = sequence[: -len(token)].rstrip()
    return sequence


def _quietly(fn, *args, **kwargs):
    """Call `fn` with the transformers loading report silenced (the task says what matters)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return fn(*args, **kwargs)
    finally:
        logging.set_verbosity(level)
