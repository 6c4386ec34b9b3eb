"""Reading plain text for language modelling, and cutting it into fixed-size token blocks.

`load_text` turns `--data` into a DatasetDict whose splits have one column, `text`:

- a `.txt` (or any non-table) file holds one document per non-blank line;
- with `document_per_file`, a folder holds one document per file (sub-folders named train/,
  validation/ (dev/), test/ are splits, as in IMDB's aclImdb layout);
- a JSON Lines / JSON / CSV / TSV / Parquet file, or a hub dataset, gives its `text_column`;
- `python-docs` is a corpus on every machine without network: the prose paragraphs of the Python
  documentation topics shipped with CPython (`pydoc_data.topics`).

Text files are read line by line into the datasets cache (Arrow files on disk), so a corpus need
not fit in memory; undecodable bytes are reported as file:line before anything is written.

`chunk_corpus` tokenizes the documents, keeps the word ids (for whole-word masking), concatenates
them and cuts the stream into blocks of `chunk_size` tokens, all in one batched `datasets.map`.
"""

from __future__ import annotations

import re
from itertools import chain
from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.data import SPLIT_NAMES, hold_out, load_hub, read_table, sources, split_files
from nlpfit.log import info

PYTHON_DOCS = "python-docs"
_CODE = re.compile(r"^\s*(>>>|\.\.\.|def |class |import |from \S+ import|return\b|for .*:$|if .*:$|while .*:$|"
                   r"try:|except\b|print\(|#|@|\w+ = |\w+\(.*\)$)")
TABLE_SUFFIXES = {".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet"}


# ---- one source -> {split: Dataset with a `text` column} -------------------------------------------
def python_docs_paragraphs() -> list[str]:
    """Prose paragraphs of the Python documentation topics (`pydoc_data.topics`, part of CPython).

    Headings, grammar rules, code and interactive sessions are left out; each paragraph becomes
    one line of plain English (about 1,500 paragraphs, 300,000 characters).
    """
    from pydoc_data.topics import topics

    paragraphs = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            lines = [line for line in block.splitlines() if line.strip()]
            if not lines or any(_CODE.match(line) for line in lines) or re.fullmatch(r"[*=\-~^ ]+", lines[-1].strip()):
                continue  # code, interactive sessions, headings
            text = " ".join(line.strip() for line in lines)
            if "::=" in text or len(text.split()) < 6 or not re.search(r"[.?!:;)\"”]$", text):
                continue  # grammar rules, fragments, titles
            if sum(ch.isalpha() or ch == " " for ch in text) < 0.8 * len(text):
                continue  # mostly symbols: tables, literals
            paragraphs.append(text)
    return paragraphs


def check_utf8(path: Path) -> int:
    """Read a file line by line (constant memory): the number of non-blank lines, or an error naming
    the file:line of the first undecodable byte."""
    n = 0
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NlpfitError(f"{path}:{i}: not UTF-8 (byte 0x{raw[exc.start]:02x})") from None
            n += bool(line.strip())
    return n


def _line_rows(paths: list[str], stamp: list):
    for path in paths:
        with open(path, encoding="utf-8-sig") as f:
            for line in f:
                if line.strip():
                    yield {"text": line.strip()}


def _document_rows(paths: list[str], stamp: list):
    for path in paths:
        text = Path(path).read_text(encoding="utf-8-sig").strip()
        if text:
            yield {"text": text}


def _on_disk(rows, paths: list[Path]):
    """A Dataset written to the datasets cache by a generator: corpora larger than memory work.
    The cache key includes each file's size and modification time, so an edited file is re-read."""
    import datasets

    stamp = [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths]
    return datasets.Dataset.from_generator(rows, gen_kwargs={"paths": [str(p) for p in paths], "stamp": stamp},
                                           features=datasets.Features({"text": datasets.Value("string")}))


def text_lines(path: Path):
    """A Dataset of the non-blank lines of a UTF-8 file, one document per line."""
    if check_utf8(path) == 0:
        raise NlpfitError(f"{path}: no text (empty corpus)")
    return _on_disk(_line_rows, [path])


def read_documents(folder: Path):
    """A Dataset of one document per file under `folder` (recursive, hidden files skipped, by path)."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if sum(check_utf8(p) for p in paths) == 0:
        raise NlpfitError(f"--data {folder}: no text files with content (empty corpus)")
    return _on_disk(_document_rows, paths)


def document_splits(folder: Path) -> dict:
    """Sub-folders named after splits (train/, dev/, test/ …) are splits; otherwise all of it is train."""
    subs = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split = SPLIT_NAMES.get(sub.name.lower())
        if split:
            if split in subs:
                raise NlpfitError(f"--data {folder}: two folders for the {split} split")
            subs[split] = sub
    if subs:
        return {split: read_documents(sub) for split, sub in subs.items()}
    return {"train": read_documents(folder)}


def text_of(ds, column: str, where: str) -> list[str]:
    """The text column of a table or hub split, as a list of strings (None and blanks dropped)."""
    if column not in ds.column_names:
        raise NlpfitError(f"{where}: no column {column!r} (set --text-column); columns are {', '.join(ds.column_names)}")
    feature = ds.features[column]
    dtype = getattr(feature, "dtype", None)
    if dtype not in ("string", "large_string"):
        raise NlpfitError(f"{where}: column {column!r} holds {dtype or type(feature).__name__}, not text "
                          "(set --text-column)")
    return [t for t in ds[column] if t is not None and t.strip()]


def read_text_source(source, text_column: str = "text", document_per_file: bool = False,
                     config: str | None = None) -> dict:
    """{split: Dataset(text)} for one `--data` value, without any hold-out."""
    import datasets

    def as_ds(texts: list[str]):
        return datasets.Dataset.from_dict({"text": texts})

    spec, path = source.spec, source.path
    if source.kind == "named":  # PYTHON_DOCS
        return {"train": as_ds(python_docs_paragraphs())}

    def read_file(p: Path):
        if p.suffix.lower() in TABLE_SUFFIXES:
            return as_ds(text_of(read_table(p), text_column, str(p)))
        if p.stat().st_size == 0:
            raise NlpfitError(f"{p}: empty file")
        return text_lines(p)

    if source.kind == "folder":
        if document_per_file:
            return document_splits(path)
        return {split: read_file(f) for split, f in split_files(path).items()}
    if source.kind == "file":
        if document_per_file:
            raise NlpfitError(f"--document-per-file: --data {spec} is a file, not a folder of documents")
        return {"train": read_file(path)}
    dsd = load_hub(spec, config)
    return {split: as_ds(text_of(ds, text_column, f"--data {spec} ({split})")) for split, ds in dsd.items()}


# ---- all of --data -> DatasetDict -------------------------------------------------------------------
def load_text(specs: list[str], *, text_column: str = "text", document_per_file: bool = False,
              config: str | None = None, train_splits: list[str] | tuple = (), validation: float = 0.1,
              test: float = 0.0, seed: int = 42, require_train: bool = True):
    """`--data` (one or several sources, concatenated per split) as a DatasetDict of `text`.

    `train_splits` names the source splits that form the training text (default: train), e.g.
    IMDB's `train` and `unsupervised`; other splits than train/validation/test are left out.
    Validation (and test) are held out of train where the data has none.
    """
    import datasets

    train_splits = list(train_splits) or ["train"]
    parts: dict[str, list] = {}
    for source in sources(specs, named=(PYTHON_DOCS,)):
        spec = source.spec
        splits = read_text_source(source, text_column, document_per_file, config)
        chosen = [s for s in train_splits if s in splits]
        if train_splits != ["train"] and len(chosen) < len(train_splits):
            missing = sorted(set(train_splits) - set(splits))
            raise NlpfitError(f"--train-split {', '.join(missing)}: --data {spec} has no such split "
                              f"(it has {', '.join(splits)})")
        for split in chosen:
            parts.setdefault("train", []).append(splits[split])
        for split in ("validation", "test"):
            if split in splits and split not in train_splits:
                parts.setdefault(split, []).append(splits[split])
        left = sorted(set(splits) - set(chosen) - {"validation", "test"})
        if left:
            info(f"--data {spec}: not using the split(s) {', '.join(left)} (add them with --train-split)")
    out = {}
    for split, dss in parts.items():
        out[split] = dss[0] if len(dss) == 1 else datasets.concatenate_datasets(dss).shuffle(seed=seed)
    where = f"--data {', '.join(specs)}"
    if require_train and len(out.get("train", [])) == 0:
        raise NlpfitError(f"{where}: no training text (empty corpus)")
    if not out or all(len(ds) == 0 for ds in out.values()):
        raise NlpfitError(f"{where}: no text (empty corpus)")
    dsd = datasets.DatasetDict(out)
    if "train" in dsd:
        dsd = hold_out(dsd, validation, test, seed)
    return dsd


# ---- documents -> blocks of tokens ------------------------------------------------------------------
def block_size(requested: int, tokenizer, model_config=None) -> int:
    """`requested` tokens, never above what the tokenizer and the model's position embeddings allow."""
    limits = []
    if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models reserve padding_idx + 1 positions
        offset = getattr(model_config, "pad_token_id", 0) + 1 if getattr(model_config, "model_type", "") in (
            "roberta", "xlm-roberta", "camembert", "longformer") else 0
        limits.append(int(positions) - offset)
    if requested <= 0:
        raise NlpfitError(f"--chunk-size {requested}: must be positive")
    limit = min(limits) if limits else requested
    if requested > limit:
        info(f"--chunk-size {requested} is above the model's maximum: using {limit}")
    return min(requested, limit)


def _word_ids(enc, i: int, ids: list[int], special: set[int]) -> list[int | None]:
    if enc.is_fast:
        return enc.word_ids(i)
    # slow tokenizer: every non-special token is its own word
    return [None if t in special else n for n, t in enumerate(ids)]


def tokenize_and_chunk(batch: dict, tokenizer, chunk_size: int, text_column: str = "text") -> dict:
    """Tokenize a batch of documents (special tokens included, as the course does), concatenate them
    and cut the stream into blocks of `chunk_size`, dropping the batch's remainder.

    Each block gets `labels` (a copy of `input_ids`, before any masking) and `word_ids`: word
    numbers local to the block, -1 for special tokens.  Words never merge across documents.
    Linear in the batch size.
    """
    enc = tokenizer(batch[text_column], verbose=False)
    keys = [k for k in enc.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
    special = set(tokenizer.all_special_ids)
    concatenated = {k: list(chain.from_iterable(enc[k])) for k in keys}
    words: list[int] = []
    offset = 0
    for i, ids in enumerate(enc["input_ids"]):
        wids = _word_ids(enc, i, ids, special)
        words.extend(-1 if w is None else w + offset for w in wids)
        offset += max((w for w in wids if w is not None), default=-1) + 1
    total = len(concatenated["input_ids"]) // chunk_size * chunk_size
    out = {k: [v[j:j + chunk_size] for j in range(0, total, chunk_size)] for k, v in concatenated.items()}
    out["labels"] = [list(block) for block in out["input_ids"]]
    out["word_ids"] = [_renumber(words[j:j + chunk_size]) for j in range(0, total, chunk_size)]
    return out


def _renumber(wids: list[int]) -> list[int]:
    """Word ids 0, 1, 2 … local to a block (-1 kept for special tokens)."""
    out, previous, n = [], None, -1
    for w in wids:
        if w < 0:
            out.append(-1)
        else:
            if w != previous:
                n += 1
            out.append(n)
        previous = w
    return out


def chunk_corpus(ds, tokenizer, chunk_size: int, desc: str = "chunking", batch_size: int = 1000):
    """Blocks of `chunk_size` tokens from a Dataset of `text` (see `tokenize_and_chunk`)."""
    return ds.map(tokenize_and_chunk, batched=True, batch_size=batch_size, remove_columns=ds.column_names,
                  fn_kwargs={"tokenizer": tokenizer, "chunk_size": chunk_size}, desc=desc)
