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


def is_local(spec: str) -> bool:
    return os.path.exists(spec) or spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).suffix != ""


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


def read_lines(path: Path) -> list[str]:
    """Read a UTF-8 text file, naming the line of the first undecodable byte."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NlpfitError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x})") from None
    return text.splitlines()


def read_table(path: Path):
    """JSON Lines / JSON / CSV / TSV / Parquet into a Dataset, with file:line errors."""
    import datasets

    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise NlpfitError(f"{path}: empty file")
    if suffix in (".jsonl", ".json", ".ndjson"):
        import json

        lines = read_lines(path)
        if suffix == ".json" and lines and lines[0].lstrip().startswith(("[", "{")) and not _is_jsonl(lines):
            try:
                obj = json.loads("\n".join(lines))
            except json.JSONDecodeError as exc:
                raise NlpfitError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
            rows = obj if isinstance(obj, list) else obj.get("data", obj)
            if not isinstance(rows, list):
                raise NlpfitError(f"{path}: expected a list of records")
            return datasets.Dataset.from_list(rows)
        rows = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            rows.append(json_object(line, path, i))
        if not rows:
            raise NlpfitError(f"{path}: empty file")
        try:
            return datasets.Dataset.from_list(rows)
        except Exception as exc:
            raise NlpfitError(f"{path}: inconsistent records ({str(exc).splitlines()[0]})") from None
    if suffix in (".csv", ".tsv"):
        import csv

        lines = read_lines(path)
        reader = csv.reader(lines, delimiter="\t" if suffix == ".tsv" else ",")
        header = next(reader, None)
        if not header:
            raise NlpfitError(f"{path}: empty file")
        cols: dict[str, list] = {h: [] for h in header}
        for i, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise NlpfitError(f"{path}:{i}: {len(row)} fields, the header has {len(header)}")
            for h, v in zip(header, row):
                cols[h].append(v)
        if not cols[header[0]]:
            raise NlpfitError(f"{path}: no rows after the header")
        return datasets.Dataset.from_dict(cols)
    if suffix == ".parquet":
        try:
            return datasets.Dataset.from_parquet(str(path))
        except Exception as exc:
            raise NlpfitError(f"{path}: cannot read Parquet ({str(exc).splitlines()[0]})") from None
    raise NlpfitError(f"{path}: unsupported file type {suffix or '(none)'}")


def json_object(line: str, path, lineno: int) -> dict:
    """One JSON Lines record, or an error naming the file and line."""
    import json

    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise NlpfitError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise NlpfitError(f"{path}:{lineno}: expected a JSON object per line")
    return row


def _is_jsonl(lines: list[str]) -> bool:
    import json

    first = next((l for l in lines if l.strip()), "")
    try:
        json.loads(first)
        return len([l for l in lines if l.strip()]) > 1
    except json.JSONDecodeError:
        return False


def require_columns(ds, columns: list[str], where: str, option: str | None = None) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        opt = f" (set {option})" if option else ""
        raise NlpfitError(f"{where}: missing column {', '.join(missing)}{opt}; columns are {', '.join(ds.column_names)}")
