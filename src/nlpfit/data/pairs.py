"""Row selection for pair data (translation, summarization): `--filter COLUMN=V1,V2`,
`--min-words COLUMN=N` and de-duplication of (source, target) pairs."""

from __future__ import annotations

from nlpfit import NlpfitError
from nlpfit.log import info


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
