"""Source-code corpora, read lazily: folders of source files, JSON Lines / Parquet / CSV tables with a
text column, and hub datasets (codeparrot-ds style: repo_name, path, content).

Every reader is a generator of documents ``{"content": text, "path": where}``, so a corpus is never
held in memory: `--streaming` training iterates it as often as needed, and the non-streaming path
writes it to an Arrow file as it reads.  The data-science keyword filter and the deterministic
train / validation / test routing (by a hash of the document's path, so it needs no second pass and
is the same whether or not the corpus is streamed) are applied while reading.

Prepared data is kept between runs in an Arrow cache (`PreparedCache`): under
`$HF_DATASETS_CACHE/nlpfit` (datasets' own cache folder, ~/.cache/huggingface/datasets by default),
one folder per key.  The documents of a corpus are keyed by what was read (every file's path, size
and modification time, the glob, text column, keyword filter and hold-out), the blocks cut from
them by the documents' key and the tokenizer and block options; an entry is written aside and
renamed into place, with its manifest, only once complete (what a killed run was writing is removed
by the next run that prepares data on the same host).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sysconfig
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from nlpfit import NlpfitError

#: the course's filter for the codeparrot-ds corpus
DS_KEYWORDS = ("pandas", "sklearn", "matplotlib", "seaborn")
TABLE_SUFFIXES = {".jsonl", ".json", ".ndjson", ".parquet", ".csv", ".tsv"}
#: a file whose first bytes hold a NUL is binary (what git and grep assume)
SNIFF_BYTES = 8192
#: the version of the prepared-data layout: a change of what is written makes new keys
CACHE_FORMAT = 1
#: documents per Arrow record batch while a corpus is written
WRITE_BATCH = 256


def parse_keywords(spec: str | None) -> list[str]:
    """`pandas,sklearn` -> ["pandas", "sklearn"] (blank items dropped)."""
    return [k.strip() for k in (spec or "").split(",") if k.strip()]


def default_sources() -> list[str]:
    """Real Python source on every machine: the standard library and the installed packages."""
    paths = sysconfig.get_paths()
    out = []
    for key in ("stdlib", "purelib", "platlib"):
        p = paths.get(key)
        if p and Path(p).is_dir() and p not in out:
            out.append(p)
    return out


@dataclass
class ScanReport:
    """What reading a corpus found: documents seen, kept by the keyword filter, and skipped files."""

    total: int = 0
    kept: int = 0
    binary: int = 0
    undecodable: int = 0
    empty: int = 0
    chars: int = 0
    splits: dict = field(default_factory=dict)
    examples_skipped: list = field(default_factory=list)

    def skip(self, kind: str, path: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if kind != "empty" and len(self.examples_skipped) < 3:  # empty __init__.py files are not news
            self.examples_skipped.append(f"{path} ({kind})")

    def summary(self, keywords: list[str]) -> str:
        parts = [f"{self.total} documents"]
        if keywords:
            share = self.kept / self.total if self.total else 0.0
            parts.append(f"{self.kept} kept by --filter-keywords {','.join(keywords)} ({share:.1%})")
        skipped = [f"{n} {what}" for what, n in (("binary", self.binary), ("undecodable (not UTF-8)", self.undecodable),
                                                 ("empty", self.empty)) if n]
        if skipped:
            parts.append("skipped " + ", ".join(skipped) + " files")
        return "; ".join(parts)


# ---- which split a document belongs to -------------------------------------------------------------
def route(key: str, seed: int, validation: float, test: float) -> str:
    """Deterministic split of a document from a hash of its key (path): no shuffling, no second pass."""
    if validation <= 0 and test <= 0:
        return "train"
    u = zlib.crc32(f"{seed}\0{key}".encode("utf-8", "surrogatepass")) / 2**32
    if u < validation:
        return "validation"
    if u < validation + test:
        return "test"
    return "train"


# ---- folders of source files ----------------------------------------------------------------------
def glob_regex(pattern: str) -> re.Pattern:
    """A `**/*.py`-style pattern as a regex on POSIX relative paths (`**/` matches zero or more folders)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        end = pattern.find("]", i + 2) if c == "[" else -1
        if end > 0:  # a character class, [abc] or [!abc]
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
            i = end + 1
            continue
        out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def walk_files(folder: Path, pattern: str) -> Iterator[Path]:
    """Files under `folder` whose relative path matches `pattern`, in sorted order, found lazily."""
    rx = glob_regex(pattern)
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        rel_root = Path(root).relative_to(folder).as_posix()
        for name in sorted(files):
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if rx.match(rel):
                yield Path(root) / name


def read_source(path: Path, report: ScanReport) -> str | None:
    """The text of a source file, or None (counted in `report`) when it is binary, not UTF-8 or empty."""
    try:
        data = path.read_bytes()
    except OSError:
        report.skip("undecodable", str(path))
        return None
    if b"\0" in data[:SNIFF_BYTES]:
        report.skip("binary", str(path))
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        report.skip("undecodable", str(path))
        return None
    if not text.strip():
        report.skip("empty", str(path))
        return None
    return text


# ---- tables --------------------------------------------------------------------------------------
def iter_table(path: Path, column: str) -> Iterator[tuple[str, object]]:
    """(key, value of `column`) for each row of a JSON Lines / Parquet / CSV file, read row by row."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise NlpfitError(f"{path}: cannot read Parquet ({str(exc).splitlines()[0]})") from None
        if column not in pf.schema_arrow.names:
            raise NlpfitError(f"{path}: no column {column!r} (set --text-column; columns are "
                              f"{', '.join(pf.schema_arrow.names)})")
        row = 0
        for batch in pf.iter_batches(columns=[column], batch_size=256):
            for value in batch.column(0).to_pylist():
                row += 1
                yield f"{path}:{row}", value
        return
    if suffix in (".csv", ".tsv"):
        import csv

        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            try:
                if reader.fieldnames and column not in reader.fieldnames:
                    raise NlpfitError(f"{path}: no column {column!r} (set --text-column; columns are "
                                      f"{', '.join(reader.fieldnames)})")
                for row in reader:
                    yield f"{path}:{reader.line_num}", row[column]
            except UnicodeDecodeError:
                raise NlpfitError(f"{path}:{reader.line_num + 1}: not UTF-8") from None
            except csv.Error as exc:
                raise NlpfitError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
        return
    # JSON Lines (a .json file holding one array is read whole)
    with open(path, "rb") as fh:
        head = fh.read(1)
        while head in (b" ", b"\n", b"\r", b"\t"):
            head = fh.read(1)
    if suffix == ".json" and head == b"[":
        from nlpfit.data import read_json

        rows = read_json(path)
        for i, row in enumerate(rows, 1):
            yield f"{path}: record {i}", _column(row, column, path, i, "record")
        return
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NlpfitError(f"{path}:{i}: not UTF-8") from None
            from nlpfit.data import parse_json

            yield f"{path}:{i}", _column(parse_json(text, path, i), column, path, i)


def _column(row, column: str, path: Path, n: int, unit: str = "line"):
    at = f"{path}:{n}" if unit == "line" else f"{path}: {unit} {n}"
    if not isinstance(row, dict):
        from nlpfit.data import kind_of

        raise NlpfitError(f"{at}: expected a JSON object, found {kind_of(row)}")
    if column not in row:
        raise NlpfitError(f"{at}: no field {column!r} (set --text-column; fields are {', '.join(row)})")
    return row[column]


# ---- hub datasets ---------------------------------------------------------------------------------
def hub_splits(spec: str, config: str | None) -> dict:
    """The splits of a hub dataset, streamed (nothing downloaded up front)."""
    from nlpfit.data import SPLIT_NAMES
    from nlpfit.data.catalog import load_hub_dataset

    dsd = load_hub_dataset(spec, config, streaming=True)
    return {SPLIT_NAMES.get(name.lower(), name): ds for name, ds in dsd.items()}


# ---- a corpus ------------------------------------------------------------------------------------
@dataclass
class CodeCorpus:
    """`--data` as a re-iterable stream of documents, filtered and routed to splits while reading.

    Iterating `documents(split)` reads the sources again each time (nothing is cached), so it can be
    used as the generator of a `datasets.IterableDataset` or of an Arrow-backed `datasets.Dataset`.
    """

    specs: tuple
    glob: str = "**/*.py"
    text_column: str = "content"
    config: str | None = None
    keywords: tuple = ()
    validation: float = 0.1
    test: float = 0.0
    seed: int = 42
    report: ScanReport = field(default_factory=ScanReport)

    def __post_init__(self):
        self.specs = tuple(str(s) for s in self.specs)
        self.keywords = tuple(self.keywords)
        from nlpfit.data import sources

        self._hub: dict = {}
        for source in sources(self.specs):  # check what can be checked before any reading starts
            if source.kind == "file" and source.path.suffix.lower() not in TABLE_SUFFIXES:
                raise NlpfitError(f"--data {source.spec}: expected a folder of source files or a JSON Lines / "
                                  "Parquet / CSV file")
            if source.kind == "hub":
                self._hub[source.spec] = hub_splits(source.spec, self.config)

    def split_names(self) -> list[str]:
        names = {"train"}
        if self.validation > 0:
            names.add("validation")
        if self.test > 0:
            names.add("test")
        for splits in self._hub.values():
            names |= set(splits)
        return [n for n in ("train", "validation", "test") if n in names] + sorted(names - {"train", "validation", "test"})

    def _raw(self) -> Iterator[tuple[str, str, str | None, str]]:
        """(where, routing key, text or None, split of the source or "") for every document of every spec.

        The routing key is relative to the spec (path inside the folder, file name and row), so a
        corpus keeps its split when it is moved."""
        for spec in self.specs:
            path = Path(os.path.expanduser(spec))
            if path.is_dir():
                for f in walk_files(path, self.glob):
                    yield str(f), f.relative_to(path).as_posix(), read_source(f, self.report), ""
            elif path.is_file():
                for key, value in iter_table(path, self.text_column):
                    yield key, f"{path.name}:{key.rsplit(':', 1)[1]}", self._as_text(value, key), ""
            else:
                splits = self._hub[spec]
                held_out = "validation" in splits  # else validation/test are carved out of train by hash
                for split, ds in splits.items():
                    if ds.column_names is not None and self.text_column not in ds.column_names:
                        raise NlpfitError(f"--data {spec}: no column {self.text_column!r} (set --text-column; "
                                          f"columns are {', '.join(ds.column_names)})")
                    for i, row in enumerate(ds):
                        key = f"{spec}:{split}:{row.get('path', i)}"
                        yield key, f"{split}:{row.get('path', i)}", self._as_text(row.get(self.text_column), key), (
                            "" if split == "train" and not held_out else split)

    def _as_text(self, value, key: str) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            self.report.skip("empty", key)
            return None
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                self.report.skip("undecodable", key)
                return None
        if not isinstance(value, str):
            from nlpfit.data import kind_of

            raise NlpfitError(f"{key}: {self.text_column} is {kind_of(value)}, not text (set --text-column)")
        return value

    def documents(self, split: str | None = None, limit: int = 0) -> Iterator[dict]:
        """Documents of one split (or all, with their split), filtered by the keywords."""
        self.report = ScanReport()
        n = 0
        for key, route_key, text, source_split in self._raw():
            if text is None:
                continue
            self.report.total += 1
            if self.keywords and not any(k in text for k in self.keywords):
                continue
            self.report.kept += 1
            doc_split = source_split or route(route_key, self.seed, self.validation, self.test)
            self.report.splits[doc_split] = self.report.splits.get(doc_split, 0) + 1
            if split is None:
                yield {"content": text, "path": key, "split": doc_split}
            elif doc_split == split:
                yield {"content": text, "path": key}
            else:
                continue
            n += 1
            if limit and n >= limit:
                return

    def texts(self, split: str | None = None, limit: int = 0) -> Iterator[str]:
        for doc in self.documents(split, limit):
            yield doc["content"]

    def identity(self) -> str | None:
        """A key of everything reading this corpus depends on: each file's path, size and modification
        time (a folder's files as --glob finds them), and the reading options.  None for hub data,
        whose content cannot be told without reading it."""
        parts: list = [CACHE_FORMAT, self.glob, self.text_column, self.keywords, self.validation, self.test,
                       self.seed]
        for spec in self.specs:
            path = Path(os.path.expanduser(spec))
            if path.is_dir():
                files = []
                for f in walk_files(path, self.glob):
                    try:
                        st = f.stat()
                    except OSError:
                        continue
                    files.append((f.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns))
                parts.append(("folder", str(path.resolve()), files))
            elif path.is_file():
                st = path.stat()
                parts.append(("file", str(path.resolve()), st.st_size, st.st_mtime_ns))
            else:
                return None
        return digest(parts)

    def write_splits(self, folder: Path) -> dict[str, Path]:
        """Every document written, as it is read, to `folder/SPLIT.arrow` (columns content, path): one
        pass over the sources, a batch of documents in memory at a time.  The splits written."""
        from datasets import Features, Value
        from datasets.arrow_writer import ArrowWriter

        features = Features({"content": Value("string"), "path": Value("string")})
        writers: dict[str, ArrowWriter] = {}
        try:
            for doc in self.documents(None):
                split = doc["split"]
                if split not in writers:
                    writers[split] = ArrowWriter(features=features, path=str(folder / f"{split}.arrow"),
                                                 writer_batch_size=WRITE_BATCH)
                writers[split].write({"content": doc["content"], "path": doc["path"]})
        finally:
            for w in writers.values():
                w.finalize()
        return {split: folder / f"{split}.arrow" for split in writers}


# ---- prepared data kept between runs -----------------------------------------------------------------
def digest(parts) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def cache_root() -> Path:
    """Where prepared data is kept: `$HF_DATASETS_CACHE/nlpfit` (read when called, so that a change
    of the variable in this process counts), else datasets' default cache folder's."""
    env = os.environ.get("HF_DATASETS_CACHE")
    if env:
        return Path(env).expanduser() / "nlpfit"
    import datasets.config

    return Path(datasets.config.HF_DATASETS_CACHE) / "nlpfit"


class PreparedCache:
    """One entry of prepared Arrow data: `ROOT/KIND/KEY/` with manifest.json, present only once complete.

    `staging()` gives a fresh private folder to write in; `commit(folder, manifest)` renames it into
    place (when another process committed the same key first, its entry is kept and ours dropped)."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self.folder = cache_root() / kind / key

    def manifest(self) -> dict | None:
        """The entry's manifest, or None when it has none (not there yet, or incomplete)."""
        try:
            return json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def load(self, files: Callable[[dict], Iterable[str]]) -> tuple[dict, dict] | None:
        """(manifest, {file name: its memory-mapped datasets.Dataset}) of the entry, each of the Arrow files
        its manifest names (`files(manifest)`) opened once, or None when it has no manifest yet.  An entry
        with one of them missing or not opening (damaged on disk) is removed, with a warning, and None
        returned: it is prepared again."""
        import datasets

        manifest = self.manifest()
        if manifest is None:
            return None
        try:
            tables = {name: datasets.Dataset.from_file(str(self.folder / name)) for name in files(manifest)}
        except Exception as exc:  # FileNotFoundError, or pyarrow's OSError / ArrowInvalid for a damaged file
            from nlpfit.log import warn

            warn(f"the prepared data in {self.folder} is damaged ({type(exc).__name__}): preparing it again")
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        return manifest, tables

    def staging(self) -> Path:
        """A fresh folder to write the entry in, named for its writer (`.staging-KEY-RANDOM@HOST@PID`);
        the folders of writers on this host that have ended (a run killed mid-preparation) are removed
        first."""
        parent = self.folder.parent
        parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for old in parent.glob(".staging-*@*@*"):
            _, old_host, pid = old.name.split("@")
            if old_host == host and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        path = parent / f".staging-{self.key}-{uuid.uuid4().hex[:8]}@{host}@{os.getpid()}"
        path.mkdir()
        return path

    def commit(self, staging: Path, manifest: dict) -> Path:
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if self.folder.exists() and self.manifest() is None:  # an incomplete entry (no manifest): replaced
            shutil.rmtree(self.folder, ignore_errors=True)
        try:
            os.rename(staging, self.folder)
        except OSError:
            if self.manifest() is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)  # committed by another process meanwhile
        return self.folder

    @staticmethod
    def discard(staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether a process of this host has that id (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_arrow(folder: Path, names: list[str]):
    """The Arrow files `names` of `folder` as one memory-mapped datasets.Dataset."""
    import datasets

    return concatenated([datasets.Dataset.from_file(str(folder / name)) for name in names])


def concatenated(parts: list):
    """Datasets of the same columns as one (the one itself when there is one)."""
    import datasets

    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
