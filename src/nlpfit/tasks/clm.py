"""Causal language modelling from scratch: a GPT-2 code-completion model (the course's CodeParrot).

1. Data: source files (a folder read lazily with --glob, JSON Lines / Parquet / CSV with
   --text-column, or a hub dataset such as codeparrot-ds), kept when they mention one of
   --filter-keywords (the course: pandas,sklearn,matplotlib,seaborn); --streaming iterates a corpus
   larger than memory (a datasets.IterableDataset, shuffled in a buffer; needs --max-steps).
2. Tokenizer: --tokenizer (e.g. from `nlpfit tokenizer train`), or --model's, or a byte-level BPE
   trained on the training files first (--vocab-size).
3. Model: --model-config gpt2 (GPT-2 small, built in; --n-layer/--n-embd/--n-head shrink it) or any
   AutoConfig causal LM, initialised at random with the tokenizer's vocabulary size and bos/eos
   ids; --model M fine-tunes an existing causal LM instead.
4. Features: each file cut into --context-length blocks (return_overflowing_tokens), keeping only
   full blocks (the dropped tokens are reported), or --pack: files joined with eos separators and
   cut into blocks, losing nothing.  DataCollatorForLanguageModeling(mlm=False) builds the labels.
5. Training: either engine; --keyword-weighted-loss weights each sample by 1 + alpha x its number of
   keyword tokens (the course's keytoken-weighted loss).  Evaluation: loss and perplexity.
6. Use: `nlpfit predict OUT "def plot(df):"`, or transformers.pipeline("text-generation", model=OUT).
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import uuid
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.config import SEED_MAX, opt
from nlpfit.log import info, warn
from nlpfit.models import SCRATCH
from nlpfit.tasks import base
from nlpfit.tasks.base import Evaluation, Task

DEFAULT_NEW_TOKENS = 64
STREAM_BATCH = 32  # files tokenized at once when streaming
MAP_BATCH = 200  # files tokenized at once when the blocks are written


@dataclass(frozen=True)
class Options:
    tokenizer: str | None = opt(None, "Tokenizer folder or hub id (default: --model's, or a byte-level BPE trained "
                                      "on the training files first).")
    model_config: str = opt("gpt2", "Architecture of a model trained from scratch: gpt2 (GPT-2 small, built in), a hub "
                                    "id or a folder with config.json (ignored with --model).")
    n_layer: int = opt(0, "Layers of the model from --model-config (0: the config's; GPT-2 small: 12).", min=0)
    n_embd: int = opt(0, "Hidden size of the model from --model-config (0: the config's; GPT-2 small: 768).", min=0)
    n_head: int = opt(0, "Attention heads of the model from --model-config (0: the config's; GPT-2 small: 12).", min=0)
    context_length: int = opt(128, "Tokens per training block (at least 2: each token predicts the next).", min=2)
    pack: bool = opt(False, "Join files with eos separators before cutting blocks (nothing dropped); "
                            "default: cut each file, drop its last partial block.")
    glob: str = opt("**/*.py", "Files to read in a --data folder.")
    text_column: str = opt("content", "Text column of JSON Lines / Parquet / CSV / hub data.")
    filter_keywords: str | None = opt(None, "Keep files mentioning any of these comma-separated words (default data: "
                                            "pandas,sklearn,matplotlib,seaborn; '' keeps all).")
    num_proc: int = opt(0, "Processes that tokenize the files and cut the blocks (datasets' map num_proc; 0 or 1: "
                           "this process).  The blocks are the same for every value.", min=0, max=256)
    data_cache: bool = opt(True, "Keep the documents and blocks prepared from files in an Arrow cache under "
                                 "$HF_DATASETS_CACHE/nlpfit, reused by a later run of the same files, tokenizer and "
                                 "block options.")
    streaming: bool = opt(False, "Stream the training corpus instead of materialising it (needs --max-steps).")
    shuffle_buffer: int = opt(1000, "Blocks in the streaming shuffle buffer (0 or 1: stream order).", min=0)
    max_stream_eval_files: int = opt(500, "With --streaming: validation files kept in memory (the first N routed "
                                          "to validation; 0: all).", min=0)
    keyword_weighted_loss: str | None = opt(None, "Weight each sample's loss by 1 + alpha x its count of these "
                                                  "comma-separated keyword tokens (e.g. plt,pd,sk,fit,predict).")
    keyword_alpha: float = opt(1.0, "alpha of --keyword-weighted-loss (0: the plain loss).", min=0)
    vocab_size: int = opt(52000, "Vocabulary of the byte-level BPE trained when --tokenizer and --model are not given "
                                 "(256 bytes, the end-of-text token, merges).", min=258)


@dataclass(frozen=True)
class PredictOptions(base.PredictOptions):
    max_new_tokens: int = opt(0, "Tokens to generate (0: the model's generation_config; 64 for models trained here).",
                              min=0)
    temperature: float = opt(0.0, "Sampling temperature (0: greedy decoding).", min=0)
    top_p: float = opt(1.0, "Nucleus sampling: keep the smallest token set of this probability (with --temperature).",
                       above=0, max=1)
    num_return_sequences: int = opt(1, "Completions per prompt (more than 1 needs --temperature > 0).", min=1)
    seed: int = opt(0, "Random seed of sampling (same seed, same completions).", min=0, max=SEED_MAX)


@dataclass(frozen=True)
class Facts(base.Facts):
    #: the training files are streamed (a datasets.IterableDataset)
    streaming: bool = False
    #: what reading the corpus found: total, kept, binary, undecodable, empty files
    scan: dict | None = None
    #: per split: blocks, tokens, dropped tokens
    blocks: dict = field(default_factory=dict)
    #: the documents were read from (or written to) the prepared-data cache, so their blocks can be too
    documents_cached: bool = False


# ---- the loss ---------------------------------------------------------------------------------------
def token_losses(logits, labels):
    """Per-token cross-entropy of next-token prediction: (batch, length-1), 0 where the label is -100,
    and the mask of counted tokens."""
    import torch

    # the labels move one step left (the last position predicts nothing) rather than the logits: the
    # cross-entropy then reads the [batch x length, vocab] logits as they lie, with no strided copy
    batch, length, vocab = logits.shape
    shift_labels = labels[:, 1:]
    targets = torch.nn.functional.pad(shift_labels, (0, 1), value=-100)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab).float(), targets.reshape(-1),
                                             ignore_index=-100, reduction="none")
    return loss.view(batch, length)[:, :-1], shift_labels != -100


def keytoken_weighted_loss(logits, labels, input_ids, keytoken_ids, alpha: float, attention_mask=None):
    """The course's keytoken-weighted loss, normalised: sample i weighs w_i = 1 + alpha * k_i, where
    k_i counts keyword tokens in its inputs, and

        loss = sum_i w_i * S_i / sum_i w_i * n_i

    (S_i: summed token loss of sample i, n_i: its number of predicted tokens).  With alpha = 0 this is
    exactly the plain mean token loss; for full blocks (equal n_i) it is the weighted mean of the
    per-sample mean losses, sum_i w_i l_i / sum_i w_i."""
    import torch

    loss, counted = token_losses(logits, labels)
    per_sample_sum = loss.sum(dim=1)
    n_tokens = counted.sum(dim=1).float()
    ids = torch.as_tensor(list(keytoken_ids), device=input_ids.device)
    hits = torch.isin(input_ids, ids)
    if attention_mask is not None:
        hits &= attention_mask.bool()
    weights = 1.0 + alpha * hits.sum(dim=1).float()
    return (weights * per_sample_sum).sum() / (weights * n_tokens).sum().clamp(min=1.0)


def keyword_token_ids(tokenizer, keywords: list[str]) -> list[int]:
    """Ids of the keywords that are single tokens (with and without a leading space), as the course does."""
    ids, missing = [], []
    for kw in keywords:
        for variant in (kw, " " + kw):
            enc = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.append(enc[0])
            else:
                missing.append(repr(variant))
    if missing:
        warn(f"--keyword-weighted-loss: not single tokens, not counted: {', '.join(missing)}")
    if not ids:
        raise NlpfitError(f"--keyword-weighted-loss {','.join(keywords)}: none of these is a single token of the "
                          "tokenizer")
    return sorted(set(ids))


def model_loss(model, batch):
    """The model's own loss: the mean next-token cross-entropy of the batch."""
    return model(**batch).loss


# ---- features -----------------------------------------------------------------------------------------
def chunk_batch(batch, tokenizer, context_length: int, column: str = "content"):
    """Each text cut into context_length blocks (the last one usually shorter), with their lengths."""
    out = tokenizer(batch[column], truncation=True, max_length=context_length, return_overflowing_tokens=True,
                    return_length=True)
    return {"input_ids": out["input_ids"], "length": out["length"]}


def pack_texts(texts, tokenizer, context_length: int, batch_size: int = 32):
    """Texts joined with eos separators and cut into context_length blocks; the last block keeps the rest."""
    eos = tokenizer.eos_token_id
    buf: list[int] = []
    batch: list[str] = []

    def flush(batch):
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            buf.extend(ids)
            buf.append(eos)
        n_full = len(buf) // context_length
        for k in range(n_full):
            yield {"input_ids": buf[k * context_length:(k + 1) * context_length]}
        del buf[:n_full * context_length]

    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield from flush(batch)
            batch = []
    if batch:
        yield from flush(batch)
    if buf:
        yield {"input_ids": list(buf)}


def full_blocks(batch, tokenizer, context_length: int, column: str = "content"):
    """The course's tokenize(): each text cut into context_length blocks, the full ones kept.  Column
    `dropped` counts the tokens of the shorter blocks left out (all on the batch's first row; a batch
    without a full block gives one empty row, which the caller removes)."""
    out = tokenizer(batch[column], truncation=True, max_length=context_length, return_overflowing_tokens=True,
                    return_length=True)
    ids = [x for x, n in zip(out["input_ids"], out["length"]) if n == context_length]
    dropped = sum(n for n in out["length"] if n != context_length)
    if not ids:
        return {"input_ids": [[]], "dropped": [dropped]}
    return {"input_ids": ids, "dropped": [dropped] + [0] * (len(ids) - 1)}


def file_tokens(batch, tokenizer, column: str = "content"):
    """Each text's token ids followed by the eos separator (what --pack joins)."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(batch[column], add_special_tokens=False, verbose=False)["input_ids"]
    return {"input_ids": [x + [eos] for x in ids]}


def pack_arrow(tokens, context_length: int, path, rows_per_batch: int = 4096) -> int:
    """The token lists of `tokens` (a Dataset with column input_ids) joined in order and cut into
    context_length blocks, written to the Arrow file `path` as they are made; the last block keeps
    the rest (what pack_texts yields).  Memory: one batch of rows.  The number of tokens."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets.arrow_writer import ArrowWriter

    writer = ArrowWriter(features=tokens.features, path=str(path))

    def write(values):
        n = len(values) // context_length + (1 if len(values) % context_length else 0)
        offsets = np.minimum(np.arange(n + 1, dtype=np.int64) * context_length, len(values)).astype(np.int32)
        blocks = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32()))
        writer.write_table(pa.table({"input_ids": blocks}))

    carry, total = np.empty(0, dtype=np.int32), 0
    try:
        for table in tokens.with_format("arrow").iter(batch_size=rows_per_batch):
            flat = pc.list_flatten(table.column("input_ids")).to_numpy().astype(np.int32, copy=False)
            total += len(flat)
            buf = np.concatenate([carry, flat])
            n_full = len(buf) // context_length * context_length
            if n_full:
                write(buf[:n_full])
            carry = buf[n_full:]
        if len(carry):
            write(carry)
    finally:
        writer.finalize()
    return total


def _pack_gen(source, tokenizer, context_length: int):
    yield from pack_texts((row["content"] for row in source), tokenizer, context_length)


def _docs_gen(corpus, split, limit=0):
    for doc in corpus.documents(split, limit):
        yield doc


# ---- the collator ---------------------------------------------------------------------------------------
def causal_lm_collator(tokenizer):
    """DataCollatorForLanguageModeling(mlm=False), with padding found from the attention mask rather
    than the pad id: GPT-2 pads with eos, and with --pack the eos separators must keep their labels."""
    from transformers import DataCollatorForLanguageModeling

    class CausalLMCollator(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            batch = super().torch_call(examples)
            if "attention_mask" in batch:
                labels = batch["input_ids"].clone()
                labels[batch["attention_mask"] == 0] = -100
                batch["labels"] = labels
            return batch

    return CausalLMCollator(tokenizer, mlm=False)


def tokenizer_digest(tokenizer) -> str | None:
    """A key of what the tokenizer makes of a text: its whole pipeline (vocabulary, merges, normaliser,
    pre-tokenizer, post-processor, added tokens) and its eos id; None for a slow tokenizer."""
    from nlpfit.data.code import digest

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return digest([type(tokenizer).__name__, backend.to_str(), tokenizer.eos_token_id])


def make_blocks(ds, tokenizer, context_length: int, pack: bool, num_proc: int, folder: Path, split: str,
                column: str = "content"):
    """The training blocks of the documents `ds`, written as Arrow files in `folder`: the course's
    batched map (tokenize, cut, keep the full blocks) or, with `pack`, the files' tokens joined with eos
    separators and cut in order.  `num_proc` > 1 tokenizes contiguous shards in that many processes
    (the same blocks, in the same order).  (blocks Dataset with column input_ids, counts)."""
    import pyarrow.compute as pc

    procs = num_proc if num_proc > 1 else None
    # a batch of files at a time: the tokenizer's encodings of a batch are the peak of memory
    common = {"batched": True, "batch_size": MAP_BATCH, "num_proc": procs, "remove_columns": ds.column_names}
    if pack:
        tokens = ds.map(file_tokens, fn_kwargs={"tokenizer": tokenizer, "column": column},
                        cache_file_name=str(folder / f"{split}-tokens.arrow"), new_fingerprint=uuid.uuid4().hex,
                        desc=f"tokenizing {split}", **common)
        n_tok = pack_arrow(tokens, context_length, folder / f"{split}-blocks.arrow")
        token_files = [f["filename"] for f in tokens.cache_files]
        del tokens
        for f in token_files:  # the joined blocks are what is kept
            Path(f).unlink(missing_ok=True)
        from nlpfit.data.code import load_arrow

        feats = load_arrow(folder, [f"{split}-blocks.arrow"])
        return feats, {"blocks": len(feats), "tokens": n_tok, "dropped": 0}
    from datasets import Features, List, Value

    # typed up front: a first batch without a full block must not make the column's type null
    chunks = ds.map(full_blocks, fn_kwargs={"tokenizer": tokenizer, "context_length": context_length,
                                            "column": column},
                    features=Features({"input_ids": List(Value("int32")), "dropped": Value("int64")}),
                    cache_file_name=str(folder / f"{split}-blocks.arrow"), new_fingerprint=uuid.uuid4().hex,
                    desc=f"tokenizing {split}", **common)
    dropped = int(pc.sum(chunks.data.column("dropped")).as_py() or 0)
    empty = int(pc.sum(pc.equal(pc.list_value_length(chunks.data.column("input_ids")), 0)).as_py() or 0)
    if empty:  # batches that held no full block left one empty row each
        chunks = chunks.filter(lambda ids: [len(x) > 0 for x in ids], input_columns="input_ids", batched=True,
                               desc=f"keeping full blocks ({split})")
        chunks = chunks.flatten_indices(cache_file_name=str(folder / f"{split}-full.arrow"),
                                        new_fingerprint=uuid.uuid4().hex)
    feats = chunks.select_columns(["input_ids"])
    return feats, {"blocks": len(feats), "tokens": len(feats) * context_length + dropped, "dropped": dropped}


# ---- prediction -------------------------------------------------------------------------------------------
def greedy_completions(model, tokenizer, prompts: list[str], budgets: list[int], batch_size: int,
                       precision: str = "fp32"):
    """Greedy completions of each prompt ({"text", "completions": [one]}, in input order), batched.

    Prompts with the same number of new tokens are sorted by length and cut into batches of
    `batch_size`, left-padded (the attention mask hides the padding and the position ids count
    from each prompt's first token).  A completion is decoded as the text-generation pipeline
    decodes it (the new tokens up to the first end-of-text, special tokens skipped), so that it is
    the pipeline's completion of that prompt alone."""
    import torch

    from nlpfit.inference import autocast, batches_by_length, weight_copies

    results: list = [None] * len(prompts)
    groups: dict[int, list[int]] = {}
    for i, (text, budget) in enumerate(zip(prompts, budgets)):
        if text:
            groups.setdefault(budget, []).append(i)
        else:  # an empty prompt: nothing to complete
            results[i] = {"text": text, "completions": []}
    encoded = tokenizer([p for p in prompts if p])["input_ids"] if any(prompts) else []
    ids_of = dict(zip([i for i, p in enumerate(prompts) if p], encoded))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    device = model.device
    with weight_copies(precision, model):  # bf16 copies of the linear weights, once for all batches
        for budget, members in groups.items():
            for chunk in batches_by_length([len(ids_of[i]) for i in members], batch_size):
                rows = [members[k] for k in chunk]
                width = max(len(ids_of[i]) for i in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    ids = ids_of[i]
                    input_ids[r, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                    attention_mask[r, width - len(ids):] = 1
                with torch.inference_mode(), autocast(precision, device):
                    out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                         max_new_tokens=budget, do_sample=False, pad_token_id=pad)
                for r, i in enumerate(rows):
                    new = out[r, width:].tolist()
                    if eos is not None and eos in new:  # generation of this prompt stopped there
                        new = new[:new.index(eos) + 1]
                    text = tokenizer.decode(new, skip_special_tokens=True)
                    results[i] = {"text": prompts[i], "completions": [text]}
    yield from results


def one_kernel_gelu(config) -> None:
    """GPT-2's activation, gelu_new (the tanh approximation of GELU written as a chain of eight
    elementwise operations, each a pass over the MLP's [tokens, 4 x hidden] activations forward and
    back), as transformers' gelu_pytorch_tanh: the same function in one kernel, equal up to rounding.  Only for
    models built here from a config; a trained model keeps the activation it was trained with."""
    if getattr(config, "activation_function", None) == "gelu_new":
        config.activation_function = "gelu_pytorch_tanh"


def _temp_cache() -> str:
    path = tempfile.mkdtemp(prefix="nlpfit-clm-")
    atexit.register(shutil.rmtree, path, True)
    return path


class CausalLM(Task):
    name = "causal-lm"
    pipeline = "text-generation"
    Options = Options
    PredictOptions = PredictOptions
    Facts = Facts
    # the course's recipe (lr 5e-4, weight decay 0.1, cosine) with CPU-sized batches
    defaults = {"lr": 5e-4, "weight_decay": 0.1, "scheduler": "cosine", "warmup_ratio": 0.05, "epochs": 1.0,
                "batch_size": 16, "eval_batch_size": 16, "group_by_length": False}
    main_metric = "perplexity"
    greater_is_better = False
    default_split = (0.05, 0.0)
    search_space = {"lr": "1e-4:3e-3:log", "batch_size": "8,16,32", "warmup_ratio": "0:0.1", "weight_decay": "0:0.2",
                    "epochs": "1,2"}

    # ---- 1. data ----------------------------------------------------------------------------
    def default_data(self) -> list[str]:
        from nlpfit.data.code import default_sources

        return default_sources()

    def default_data_options(self) -> dict:
        """The course's data-science filter, recorded in run.json so that `evaluate` reads the same files."""
        from nlpfit.data.code import DS_KEYWORDS

        return {"filter_keywords": ",".join(DS_KEYWORDS)} if self.opts.filter_keywords is None else {}

    def default_model(self) -> str:
        return SCRATCH

    @property
    def from_scratch(self) -> bool:
        return not self.cfg.model or self.cfg.model == SCRATCH

    def corpus(self):
        from nlpfit.data.code import CodeCorpus, parse_keywords

        cfg, o = self.cfg, self.opts
        return CodeCorpus(tuple(cfg.data), glob=o.glob, text_column=o.text_column, config=cfg.data_config,
                          keywords=tuple(parse_keywords(o.filter_keywords)), validation=cfg.validation_split,
                          test=cfg.test_split, seed=cfg.split_seed)

    def load_data(self, trained: Facts | None = None):
        import datasets

        cfg, o = self.cfg, self.opts
        corpus = self.corpus()
        keywords = list(corpus.keywords)
        where = f"--data {', '.join(cfg.data)}"
        streaming = o.streaming and trained is None
        if streaming:
            if cfg.max_steps <= 0:
                raise NlpfitError("--streaming: a stream has no length; set --max-steps")
            raw = {}
            for split in corpus.split_names():
                if split == "train":
                    continue
                ds = datasets.Dataset.from_generator(
                    _docs_gen, gen_kwargs={"corpus": corpus, "split": split, "limit": o.max_stream_eval_files},
                    cache_dir=_temp_cache(), fingerprint=uuid.uuid4().hex)
                if len(ds):
                    raw[split] = ds
            # (the validation pass stopped after max_stream_eval_files; the training stream reads everything)
            train = datasets.IterableDataset.from_generator(_docs_gen, gen_kwargs={"corpus": corpus, "split": "train"})
            if cfg.max_train_samples:
                train = train.take(cfg.max_train_samples)
            raw = {"train": train, **raw}
            info("data: streaming the training files; " + ", ".join(f"{s} {len(d)} files" for s, d in raw.items()
                                                                     if s != "train"))
            return raw, Facts(streaming=True)

        from nlpfit.data.code import PreparedCache, load_arrow

        key = corpus.identity() if o.data_cache else None  # None: hub data, or the cache is off
        entry = PreparedCache("clm-documents", key) if key else None
        cached = entry.load(lambda manifest: manifest["splits"].values()) if entry else None
        tables = {}
        if cached is not None:
            (manifest, tables), folder = cached, entry.folder
            info(f"data: reusing the documents prepared by an earlier run from {folder} (same files, sizes and "
                 "modification times, same reading options)")
        else:
            folder = entry.staging() if entry else Path(_temp_cache())
            try:
                written = corpus.write_splits(folder)
                report = corpus.report
                manifest = {"splits": {split: path.name for split, path in written.items()},
                            "scan": {"total": report.total, "kept": report.kept, "binary": report.binary,
                                     "undecodable": report.undecodable, "empty": report.empty},
                            "summary": report.summary(keywords), "skipped": list(report.examples_skipped)}
                if not report.kept:
                    raise NlpfitError(f"{where}: no documents ({manifest['summary']}; --glob {o.glob})")
                if entry:
                    folder = entry.commit(folder, manifest)
            except BaseException:
                if entry:
                    PreparedCache.discard(folder)
                raise
        documents_cached = entry is not None
        info(f"data: {manifest['summary']}")
        if manifest["skipped"]:
            info("  skipped, e.g. " + "; ".join(manifest["skipped"]))
        names = manifest["splits"]
        order = [s for s in corpus.split_names() if s in names] + sorted(set(names) - set(corpus.split_names()))
        raw = datasets.DatasetDict()
        for split in order:
            part = tables[names[split]] if tables else load_arrow(folder, [names[split]])
            if len(part):
                raw[split] = part
        if "train" not in raw and trained is None:
            total = sum(len(d) for d in raw.values())
            raise NlpfitError(f"{where}: no training documents (all {total} went to validation/test)")
        info("data: " + ", ".join(f"{s} {len(d)} files" for s, d in raw.items()))
        return raw, Facts(scan=manifest["scan"], documents_cached=documents_cached)

    # ---- 2. model and tokenizer --------------------------------------------------------------
    def build(self, raw, facts):
        from transformers import AutoModelForCausalLM

        from nlpfit.models import load_model, load_tokenizer, resolve_model

        o = self.opts
        if o.tokenizer:
            tokenizer = self._load_tokenizer(o.tokenizer)
        elif not self.from_scratch:
            tokenizer = load_tokenizer(resolve_model(self.cfg.model))
        else:
            tokenizer = self._train_tokenizer(raw["train"])
        self._prepare_tokenizer(tokenizer)
        if self.from_scratch:
            model = self._model_from_config(tokenizer)
        else:
            model = load_model(AutoModelForCausalLM, resolve_model(self.cfg.model), "causal language")
            limit = self._max_positions(model.config)
            if limit and o.context_length > limit:
                raise NlpfitError(f"--context-length {o.context_length}: --model {self.cfg.model} has only {limit} "
                                  "positions")
            if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tokenizer))
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        gen = model.generation_config  # saved with the model: plain pipeline() completes this much
        gen.pad_token_id, gen.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        if gen.max_new_tokens is None:
            gen.max_new_tokens = DEFAULT_NEW_TOKENS
        n_params = sum(p.numel() for p in model.parameters())
        info(f"model: {model.config.model_type}, {n_params / 1e6:.1f}M parameters"
             + (" (random initialisation)" if self.from_scratch else f" (from {self.cfg.model})"))
        return model, tokenizer

    def _load_tokenizer(self, spec: str):
        from nlpfit.models import load_tokenizer, resolve_tokenizer

        return load_tokenizer(resolve_tokenizer(spec, "--tokenizer"), option="--tokenizer")

    def _train_tokenizer(self, train):
        from nlpfit.tokenizer_training import train_bpe

        info(f"--tokenizer not given: training a byte-level BPE tokenizer ({self.opts.vocab_size} tokens) on the "
             "training files first (`nlpfit tokenizer train` does this once for several runs)")
        texts = (row["content"] for row in train)
        return train_bpe(texts, self.opts.vocab_size)

    def _prepare_tokenizer(self, tokenizer) -> None:
        if tokenizer.eos_token is None:
            if self.opts.pack:
                raise NlpfitError("--pack: the tokenizer has no eos token to separate files")
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise NlpfitError("the tokenizer has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token: the course pads with eos

    @staticmethod
    def _max_positions(config) -> int | None:
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def _model_from_config(self, tokenizer):
        from transformers import AutoModelForCausalLM, GPT2Config

        o = self.opts
        spec = o.model_config
        if spec in ("gpt2", "gpt2-small", "openai-community/gpt2"):
            config = GPT2Config()  # its defaults are GPT-2 small's hyperparameters
        else:
            from nlpfit.models import load_config

            config = load_config(spec, "--model-config")
        config.vocab_size = len(tokenizer)
        config.bos_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        for flag, attr in (("n_layer", "num_hidden_layers"), ("n_embd", "hidden_size"), ("n_head", "num_attention_heads")):
            value = getattr(o, flag)
            if value:
                setattr(config, attr, value)
        if config.hidden_size % config.num_attention_heads:
            raise NlpfitError(f"--n-embd {config.hidden_size} is not a multiple of --n-head {config.num_attention_heads}")
        for attr in ("intermediate_size",):  # architectures with an explicit MLP width follow the hidden size
            if (o.n_embd and getattr(config, attr, None)) and config.model_type != "gpt2":
                setattr(config, attr, 4 * config.hidden_size)
        one_kernel_gelu(config)
        limit = self._max_positions(config)
        if limit and limit < o.context_length:
            config.max_position_embeddings = o.context_length
        config.n_ctx = o.context_length  # as the course records it
        try:
            return AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        except ValueError as exc:
            raise NlpfitError(f"--model-config {spec}: not a causal language model ({str(exc).splitlines()[0]})") from None

    def load_trained(self, out_dir: str):
        from transformers import AutoModelForCausalLM

        from nlpfit.models import load_model, load_tokenizer

        tokenizer = load_tokenizer(out_dir, option=None)
        self._prepare_tokenizer(tokenizer)
        return load_model(AutoModelForCausalLM, out_dir, "causal language", option=None), tokenizer

    # ---- 3. features ------------------------------------------------------------------------
    def preprocess(self, raw, tokenizer, model_config, facts, *, training):
        import datasets

        o = self.opts
        ctx = o.context_length
        features, blocks = {}, {}
        for split, ds in raw.items():
            if isinstance(ds, datasets.IterableDataset):
                features[split] = self._stream_features(ds, tokenizer)
                continue
            feats, stats = self._blocks(split, ds, tokenizer, facts.documents_cached)
            if o.pack:
                info(f"{split}: {len(feats)} blocks from {stats['tokens']} tokens (files packed with eos separators, "
                     "last block shorter: nothing dropped)")
            else:
                dropped, total = stats["dropped"], stats["tokens"]
                info(f"{split}: {len(feats)} blocks of {ctx} tokens; dropped {dropped} of {total} tokens "
                     f"({dropped / max(total, 1):.1%}) in partial blocks at file ends (--pack keeps them)")
            blocks[split] = stats
            if len(feats) == 0:
                raise NlpfitError(f"{split}: no block of {ctx} tokens (files too short: lower --context-length or "
                                  "use --pack)")
            features[split] = feats
        return features, dataclasses.replace(facts, blocks=blocks)

    def _blocks(self, split: str, ds, tokenizer, documents_cached: bool):
        """The blocks of one split and their counts, from the cache when an earlier run made them from
        the same documents (`documents_cached`: read through the cache) with the same tokenizer and
        block options."""
        from nlpfit.data.code import CACHE_FORMAT, PreparedCache, concatenated, digest, load_arrow

        o = self.opts
        tok_key = tokenizer_digest(tokenizer)
        entry = None
        if documents_cached and tok_key and ds.cache_files:
            # the documents' fingerprint follows their files and any selection made since (--max-*-samples)
            entry = PreparedCache("clm-blocks", digest([CACHE_FORMAT, ds._fingerprint, tok_key, o.context_length,
                                                        o.pack]))
            cached = entry.load(lambda manifest: manifest["files"])
            if cached is not None:
                manifest, tables = cached
                info(f"{split}: reusing the blocks prepared by an earlier run from {entry.folder}")
                feats = concatenated([tables[name] for name in manifest["files"]])
                return feats.select_columns(["input_ids"]), manifest["stats"]
        folder = entry.staging() if entry else Path(_temp_cache())
        try:
            feats, stats = make_blocks(ds, tokenizer, o.context_length, o.pack, o.num_proc, folder, split)
            if entry is None or not len(feats):  # nothing to keep (no block: preprocess says so)
                if entry:
                    PreparedCache.discard(folder)
                return feats, stats
            files = [Path(f["filename"]).name for f in feats.cache_files]
            del feats
            for f in folder.glob("*.arrow"):  # intermediate files
                if f.name not in files:
                    f.unlink()
            folder = entry.commit(folder, {"files": files, "stats": stats})
        except BaseException:
            if entry:
                PreparedCache.discard(folder)
            raise
        return load_arrow(folder, files).select_columns(["input_ids"]), stats

    def _stream_features(self, ds, tokenizer):
        import datasets

        o, ctx = self.opts, self.opts.context_length
        if o.pack:
            blocks = datasets.IterableDataset.from_generator(
                _pack_gen, gen_kwargs={"source": ds, "tokenizer": tokenizer, "context_length": ctx})
        else:
            # small batches of files: memory is one batch of token lists, whatever the corpus size
            blocks = ds.map(chunk_batch, batched=True, batch_size=STREAM_BATCH, remove_columns=["content", "path"],
                            fn_kwargs={"tokenizer": tokenizer, "context_length": ctx})
            blocks = blocks.filter(lambda n: n == ctx, input_columns="length").remove_columns("length")
        return blocks.shuffle(seed=self.cfg.seed, buffer_size=o.shuffle_buffer) if o.shuffle_buffer > 1 else blocks

    def collator(self, tokenizer, model):
        return causal_lm_collator(tokenizer)

    # ---- 4. loss and evaluation ---------------------------------------------------------------
    def loss_function(self, tokenizer):
        """With --keyword-weighted-loss, the course's keytoken-weighted loss; else the model's own mean
        token loss (returned here rather than None, so that Trainer does not rescale it by its own count
        of label tokens, which includes the first position a causal LM never predicts)."""
        if not self.opts.keyword_weighted_loss:
            return model_loss
        from nlpfit.data.code import parse_keywords

        keytoken_ids = keyword_token_ids(tokenizer, parse_keywords(self.opts.keyword_weighted_loss))
        alpha = self.opts.keyword_alpha
        info(f"--keyword-weighted-loss: {len(keytoken_ids)} keyword tokens, alpha {alpha}")

        def loss(model, batch):
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            return keytoken_weighted_loss(logits, batch["labels"], batch["input_ids"], keytoken_ids, alpha,
                                          batch.get("attention_mask"))

        return loss

    def eval_step(self, model, batch):
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss, counted = token_losses(logits, batch["labels"])
        return {"loss_sum": loss.sum(dim=1), "n_tokens": counted.sum(dim=1)}

    def compute_metrics(self, outputs, features, raw, facts, tokenizer):
        import numpy as np

        n = float(np.sum(outputs["n_tokens"]))
        loss = float(np.sum(outputs["loss_sum"], dtype=np.float64) / max(n, 1.0))
        return Evaluation({"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": int(n)})

    # ---- 5. prediction --------------------------------------------------------------------------
    def example_inputs(self, raw, n):
        """Prompts: the first lines of held-out files (up to 3 lines, 200 characters; prediction keeps
        what fits the model's positions)."""
        prompts = []
        for row in raw.select(range(min(len(raw), 4 * n))):
            lines = [line for line in row["content"].splitlines() if line.strip()][:3]
            if lines:
                prompts.append("\n".join(lines)[:200] + "\n")
            if len(prompts) == n:
                break
        return prompts

    def check_inputs(self, out_dir, inputs, popts):
        if popts.num_return_sequences > 1 and popts.temperature <= 0:
            raise NlpfitError("--num-return-sequences > 1 needs sampling: set --temperature (e.g. 0.8)")
        if popts.max_new_tokens < 0:
            raise NlpfitError("--max-new-tokens must be positive (0: the model's generation_config)")
        if not all(isinstance(text, str) for text in inputs):
            raise NlpfitError("predict: each input must be a prompt text")

    def load_predictor(self, out_dir):
        from transformers import pipeline

        from nlpfit.inference import inference_device

        model, tokenizer = self.load_trained(out_dir)  # the pad token set as in training
        return pipeline("text-generation", model=model, tokenizer=tokenizer, device=inference_device(),
                        trust_remote_code=False)

    def predict_with(self, predictor, inputs, popts):
        """Completions of each prompt.  Greedy decoding runs batched (prompts of similar length
        left-padded together, `popts.batch_size` at a time) and gives the completions the pipeline
        gives one prompt at a time; sampling runs the pipeline on each prompt after seeding it, so that a
        prompt's completions depend on the seed alone, not on the other prompts."""
        import torch
        from transformers import set_seed

        from nlpfit.inference import autocast

        pipe = predictor  # the pipeline load_predictor made
        self.check_inputs(None, inputs, popts)
        budgets = [self._new_tokens(pipe, text, popts) if text else 0 for text in inputs]
        if popts.temperature <= 0:
            yield from greedy_completions(pipe.model, pipe.tokenizer, inputs, budgets, popts.batch_size or 1,
                                          popts.precision)
            return
        for text, max_new in zip(inputs, budgets):
            if not text:  # an empty prompt: nothing to complete
                yield {"text": text, "completions": []}
                continue
            kwargs = {"max_new_tokens": max_new, "num_return_sequences": popts.num_return_sequences,
                      "return_full_text": False, "pad_token_id": pipe.tokenizer.pad_token_id,
                      "do_sample": True, "temperature": popts.temperature, "top_p": popts.top_p}
            set_seed(popts.seed)
            with torch.inference_mode(), autocast(popts.precision, pipe.model.device, pipe.model):
                outs = pipe(text, **kwargs)
            yield {"text": text, "completions": [o["generated_text"] for o in outs]}

    def _new_tokens(self, pipe, text: str, popts) -> int:
        """Tokens to generate after `text`: --max-new-tokens (or the model's default), cut to the positions left."""
        limit = self._max_positions(pipe.model.config)
        max_new = popts.max_new_tokens or pipe.model.generation_config.max_new_tokens or DEFAULT_NEW_TOKENS
        n_prompt = len(pipe.tokenizer(text)["input_ids"])
        if limit and n_prompt + max_new > limit:
            max_new = max(limit - n_prompt, 0)
            warn(f"the model has {limit} positions: generating {max_new} tokens after a {n_prompt}-token prompt")
            if max_new == 0:
                raise NlpfitError(f"the prompt has {n_prompt} tokens: no room left in the model's {limit} positions")
        return max_new

    def card_data(self, facts, model, tokenizer):
        o = self.opts
        tokenizer_source = o.tokenizer or (f"byte-level BPE trained on the training files ({len(tokenizer)} tokens)"
                                           if self.from_scratch else None)
        data = {"context_length": o.context_length, "pack": o.pack, "streaming": facts.streaming or o.streaming,
                "config": o.model_config if self.from_scratch else None, "tokenizer": tokenizer_source,
                "filter_keywords": o.filter_keywords, "keyword_weighted_loss": o.keyword_weighted_loss,
                "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
                "architecture": model.config.model_type}
        if facts.scan is not None:
            data["scan"] = facts.scan
        if facts.blocks:
            data["blocks"] = facts.blocks
        return data
