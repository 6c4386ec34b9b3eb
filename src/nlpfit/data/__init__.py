"""Reading and validating training data.

`load_splits` turns whatever `--data` names into a `datasets.DatasetDict` with train / validation
(/ test) splits: a hub dataset id, a folder holding one file per split, or one file that is split
deterministically.  How a single file is read is up to the task (CoNLL columns, JSON Lines, text…).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nlpfit import NlpfitError

SPLIT_NAMES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "dev": "validation", "val": "validation",
    "test": "test", "testing": "test",
}


def names_a_path(spec: str) -> bool:
    """Whether `spec` can only be a local path, not a hub id (`name` or `org/name`, maybe with an
    `@revision`): it exists; starts with `.`, `/` or `~`; ends with a slash; has two slashes or more
    before any `@`; or its first folder exists here (`runs/missing` where `runs/` is a folder)."""
    spec = str(spec)
    if os.path.exists(os.path.expanduser(spec)) or spec.startswith((".", "/", "~")) or spec.endswith(("/", os.sep)):
        return True
    base = spec.split("@", 1)[0]
    parts = base.replace(os.sep, "/").split("/")
    return len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))


def is_local(spec: str) -> bool:
    """A --data value that names a file or folder (one that does not exist is an error, not a hub id)."""
    return names_a_path(spec) or os.sep in spec and Path(spec).suffix != ""


@dataclass(frozen=True)
class Source:
    """One `--data` value: a local folder, a local file, a hub dataset id, or a corpus that nlpfit
    builds itself (`named`, e.g. python-docs)."""

    spec: str
    kind: str  # "folder", "file", "hub" or "named"
    path: Path | None = None


def sources(specs, named: tuple = ()) -> list[Source]:
    """What each `--data` value names.  The one place that tells folders, files and hub ids apart:
    a value that looks like a path but does not exist is an error, not a hub id."""
    if not specs:
        raise NlpfitError("--data is required")
    out = []
    for spec in specs:
        spec = str(spec)
        path = Path(os.path.expanduser(spec))
        if spec in named:
            out.append(Source(spec, "named"))
        elif path.is_dir():
            out.append(Source(spec, "folder", path))
        elif path.is_file():
            out.append(Source(spec, "file", path))
        elif is_local(spec):
            raise NlpfitError(f"--data {spec}: no such file or folder")
        else:
            out.append(Source(spec, "hub"))
    return out


def split_files(folder: Path) -> dict[str, Path]:
    """Map split names to the files of a folder (train.conll, dev.jsonl, test.txt …)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        split = SPLIT_NAMES.get(path.name.split(".")[0].lower())
        if split is None:
            continue
        if split in found:
            raise NlpfitError(f"{folder}: two files for the {split} split: {found[split].name} and {path.name}")
        found[split] = path
    if "train" not in found and "validation" not in found and "test" not in found:
        raise NlpfitError(f"{folder}: no train/validation/test files (expected names like train.conll, dev.jsonl)")
    return found


def load_hub(spec: str, config: str | None):
    from nlpfit.data.catalog import load_hub_dataset  # course names resolved; one-line errors

    return load_hub_dataset(spec, config)


def hold_out(dsd, validation: float, test: float, seed: int):
    """Deterministically carve validation (and test) splits out of train where they are missing."""
    import datasets

    dsd = datasets.DatasetDict(dict(dsd))
    train = dsd["train"]
    need_val = "validation" not in dsd and validation > 0
    need_test = "test" not in dsd and test > 0
    if not (need_val or need_test):
        return dsd
    frac = (validation if need_val else 0) + (test if need_test else 0)
    if frac >= 1 or len(train) < 3:
        raise NlpfitError(f"cannot hold out {frac:.0%} of {len(train)} training examples for evaluation")
    parts = train.train_test_split(test_size=frac, seed=seed, shuffle=True)
    dsd["train"] = parts["train"]
    held = parts["test"]
    if need_val and need_test:
        n_val = round(len(held) * validation / frac)
        dsd["validation"] = held.select(range(n_val))
        dsd["test"] = held.select(range(n_val, len(held)))
    elif need_val:
        dsd["validation"] = held
    else:
        dsd["test"] = held
    return dsd


def load_splits(specs: list[str], read_file: Callable[[Path], "object"], *, config: str | None = None,
                validation: float = 0.1, test: float = 0.0, seed: int = 42):
    """Read `--data` (one or several specs, concatenated per split) into a DatasetDict."""
    import datasets

    parts: dict[str, list] = {}
    for source in sources(specs):
        if source.kind == "folder":
            dsd = {split: read_file(f) for split, f in split_files(source.path).items()}
        elif source.kind == "file":
            dsd = {"train": read_file(source.path)}
        else:
            dsd = dict(load_hub(source.spec, config))
        for split, ds in dsd.items():
            parts.setdefault(split, []).append(ds)
    out = {}
    for split, dss in parts.items():
        out[split] = dss[0] if len(dss) == 1 else datasets.concatenate_datasets(dss).shuffle(seed=seed)
    if "train" not in out:
        return datasets.DatasetDict(out)
    return hold_out(datasets.DatasetDict(out), validation, test, seed)


def text_of_bytes(data: bytes, where) -> str:
    """UTF-8 bytes as text (a byte-order mark dropped), naming the line of the first undecodable byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NlpfitError(f"{where}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x})") from None


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file, naming the line of the first undecodable byte."""
    return text_of_bytes(path.read_bytes(), path).splitlines()


def parse_json(text: str, where, line: int | None = None):
    """`json.loads`, with an error naming `where` and the line (`line`: the line `text` is on)."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NlpfitError(f"{where}:{line or exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise NlpfitError(f"{where}:{line or 1}: invalid JSON (nested too deeply)") from None


def read_json(path: Path):
    """A whole UTF-8 JSON file (run.json, config.json …), with errors naming the file and line."""
    if path.stat().st_size == 0:
        raise NlpfitError(f"{path}: empty file, expected JSON")
    return parse_json(text_of_bytes(path.read_bytes(), path), path)


def read_json_object(path: Path) -> dict:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise NlpfitError(f"{path}: expected a JSON object, found {kind_of(obj)}")
    return obj


def kind_of(value) -> str:
    """What a JSON value is, in words (for error messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        inner = next((kind_of(v) for v in value if v is not None), None)
        return f"a list of {_plural(inner)}" if inner else "a list"
    return type(value).__name__


def _plural(kind: str) -> str:
    return {"text": "texts", "a number": "numbers", "an object": "objects", "true/false": "true/false values"}.get(
        kind, "lists" if kind.startswith("a list") else kind)


#: check(row, where) raises NlpfitError when a row of a table is unusable; `where` is "file:line" (or "file: row N")
RowCheck = Callable[[dict, str], None]


def read_table(path: Path, check: RowCheck | None = None):
    """JSON Lines / JSON / CSV / TSV / Parquet into a Dataset, with file:line errors.

    `check` is called with every row and where it is (`file:line`, `file: record N`, `file: row N`)
    before the Dataset is made: a task rejects values of the wrong type there, naming the line."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise NlpfitError(f"{path}: empty file")
    if suffix in (".jsonl", ".json", ".ndjson"):
        lines = read_lines(path)
        if suffix == ".json" and lines and lines[0].lstrip().startswith(("[", "{")) and not is_json_lines(lines):
            obj = parse_json("\n".join(lines), path)
            rows = obj if isinstance(obj, list) else obj.get("data", obj)
            if not isinstance(rows, list):
                raise NlpfitError(f"{path}: expected a list of records (or {{\"data\": [...]}})")
            if not rows:
                raise NlpfitError(f"{path}: no records (an empty list)")
            for k, row in enumerate(rows, 1):
                if not isinstance(row, dict):
                    raise NlpfitError(f"{path}: record {k} is {kind_of(row)}, expected an object of fields")
            return _records(rows, [f"{path}: record {k}" for k in range(1, len(rows) + 1)], path, check)
        rows, where = [], []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rows.append(json_object(line, path, i))
            where.append(f"{path}:{i}")
        if not rows:
            raise NlpfitError(f"{path}: empty file")
        return _records(rows, where, path, check)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",", check)
    if suffix == ".parquet":
        return _read_parquet(path, check)
    raise NlpfitError(f"{path}: unsupported file type {suffix or '(none)'}")


def _records(rows: list[dict], where: list[str], path: Path, check: RowCheck | None):
    """A Dataset of JSON records; a field whose kind changes from record to record is named."""
    import datasets

    if check is not None:
        for row, at in zip(rows, where):
            check(row, at)
    try:
        return datasets.Dataset.from_list(rows)
    except Exception as exc:  # Arrow cannot hold the records in one table
        first: dict[str, str] = {}
        for row, at in zip(rows, where):
            for key, value in row.items():
                if value is None:
                    continue
                kind = kind_of(value)
                if first.setdefault(key, kind) != kind:
                    raise NlpfitError(f"{at}: {key} is {kind}, earlier records have {first[key]}") from None
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NlpfitError(f"{path}: inconsistent records ({msg})") from None


def _read_csv(path: Path, delimiter: str, check: RowCheck | None):
    import csv

    import datasets

    reader = csv.reader(read_lines(path), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            raise NlpfitError(f"{path}: empty file")
        cols: dict[str, list] = {h: [] for h in header}
        for row in reader:
            if not row:
                continue
            i = reader.line_num
            if len(row) != len(header):
                raise NlpfitError(f"{path}:{i}: {len(row)} fields, the header has {len(header)}")
            if check is not None:
                check(dict(zip(header, row)), f"{path}:{i}")
            for h, v in zip(header, row):
                cols[h].append(v)
    except csv.Error as exc:
        raise NlpfitError(f"{path}:{reader.line_num}: not valid {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None
    if not cols[header[0]]:
        raise NlpfitError(f"{path}: no rows after the header")
    return datasets.Dataset.from_dict(cols)


def _read_parquet(path: Path, check: RowCheck | None):
    import datasets
    import pyarrow.parquet as pq

    try:
        rows = pq.ParquetFile(path).metadata.num_rows  # the footer: garbage and truncated files fail here
        ds = datasets.Dataset.from_parquet(str(path)) if rows else None
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NlpfitError(f"{path}: cannot read Parquet ({msg})") from None
    if ds is None:
        raise NlpfitError(f"{path}: no rows")
    if check is not None:
        for i, row in enumerate(ds, 1):
            check(row, f"{path}: row {i}")
    return ds


def json_object(line: str, path, lineno: int) -> dict:
    """One JSON Lines record, or an error naming the file and line."""
    row = parse_json(line, path, lineno)
    if not isinstance(row, dict):
        raise NlpfitError(f"{path}:{lineno}: expected a JSON object per line, found {kind_of(row)}")
    return row


def is_json_lines(lines: list[str]) -> bool:
    import json

    first = next((l for l in lines if l.strip()), "")
    try:
        json.loads(first)
        return len([l for l in lines if l.strip()]) > 1
    except (json.JSONDecodeError, RecursionError):
        return False


def require_columns(names: list[str], columns: list[str], where: str, option: str | None = None) -> None:
    """`names` (the columns of a table) must hold `columns`."""
    missing = [c for c in columns if c not in names]
    if missing:
        opt = f" (set {option})" if option else ""
        raise NlpfitError(f"{where}: missing column {', '.join(missing)}{opt}; columns are {', '.join(names)}")
