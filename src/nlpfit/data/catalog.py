"""The course's datasets, resolved: what `--data conll2003` (and the other names the course's
chapter 7 loads) reads on the installed `datasets`.

`datasets` 4 and later no longer run loading scripts ("Dataset scripts are no longer supported, but
found conll2003.py"), and several of the course's datasets are still scripts on the Hub.  Each of them
is mapped here to a source that loads without one, with the columns and label names the course uses:

- the Hub's Parquet conversion of the script dataset (the `refs/convert/parquet` branch the dataset
  viewer writes, one folder per configuration, one per split), read with the `parquet` builder from
  `hf://` paths; label names that the Parquet files do not carry as ClassLabel features are restored
  from the lists below (copied from the datasets' scripts and cards);
- or the maintained script-free repository (`stanfordnlp/imdb`, `rajpurkar/squad`, …).

`load_hub_dataset` is the one function the hub loading paths call (`nlpfit.data.load_hub`,
`nlpfit.data.code.hub_splits`); `resolved_source` says, without any network, what a spec resolves to,
for the run's record; `table` is what `nlpfit datasets` prints.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from nlpfit import NlpfitError
from nlpfit.log import info, warn

PARQUET_REVISION = "refs/convert/parquet"
#: what datasets >= 4 says when a hub repository still holds a loading script
SCRIPT_ERROR = "Dataset scripts are no longer supported"

# ---- label names (the ClassLabel features of the datasets' scripts) --------------------------------
#: conll2003.py (huggingface/datasets, datasets/conll2003): ner_tags, pos_tags and chunk_tags
CONLL2003_NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
CONLL2003_POS = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ",
                 "JJR", "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$",
                 "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT",
                 "WP", "WP$", "WRB"]
CONLL2003_CHUNK = ["O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ",
                   "B-LST", "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR",
                   "B-UCP", "I-UCP", "B-VP", "I-VP"]
#: the dataset card of leondz/wnut_17 (ner_tags)
WNUT17_NER = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
              "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]
#: the dataset card of stanfordnlp/imdb (label)
IMDB_LABELS = ["neg", "pos"]

AMAZON_UNAVAILABLE = (
    "no loadable source: amazon_reviews_multi was withdrawn from the Hub by its data provider (see "
    "huggingface/course#679), and no copy with review_body/review_title for en and es loads here; the closest "
    "is mteb/AmazonReviewsClassification (Parquet, configurations de/en/es/fr/ja/zh, 200,000/5,000/5,000 "
    "reviews with a `text` column and an integer star `label`, but no review titles, so nothing to summarize into); "
    "for the course's summarization pass your own files: --data FILE --text-column review_body "
    "--summary-column review_title")


@dataclass(frozen=True)
class Entry:
    """One dataset of the course and the source it is read from."""

    name: str
    tasks: tuple
    source: str | None  # hub id that is loaded; None: nothing loads
    splits: tuple = ("train", "validation", "test")
    config: str | None = None  # configuration loaded when --data-config is not given
    configs: tuple = ()  # every --data-config accepted (default: only `config`)
    parquet: bool = False  # read the Hub's Parquet conversion (refs/convert/parquet) of `source`
    labels: dict = field(default_factory=dict)  # column -> label names (ClassLabel restored)
    labels_from: str = ""
    aliases: tuple = ()
    unavailable: str | None = None

    def accepted_configs(self) -> tuple:
        return self.configs or ((self.config,) if self.config else ())


CATALOG: tuple = (
    Entry("conll2003", ("ner", "pos", "chunk"), "eriktks/conll2003", config="conll2003", parquet=True,
          labels={"ner_tags": CONLL2003_NER, "pos_tags": CONLL2003_POS, "chunk_tags": CONLL2003_CHUNK},
          labels_from="the ClassLabel features of conll2003.py", aliases=("eriktks/conll2003",)),
    Entry("wnut_17", ("ner",), "leondz/wnut_17", config="wnut_17", parquet=True,
          labels={"ner_tags": WNUT17_NER}, labels_from="the dataset card of leondz/wnut_17",
          aliases=("leondz/wnut_17",)),
    Entry("imdb", ("mlm",), "stanfordnlp/imdb", splits=("train", "test", "unsupervised"), config="plain_text",
          labels={"label": IMDB_LABELS}, labels_from="the dataset card of stanfordnlp/imdb",
          aliases=("stanfordnlp/imdb",)),
    Entry("kde4", ("translation",), "Helsinki-NLP/kde4", splits=("train",), config="en-fr", parquet=True,
          aliases=("Helsinki-NLP/kde4",)),
    Entry("amazon_reviews_multi", ("summarization",), None, splits=(), config="en", configs=("en", "es"),
          unavailable=AMAZON_UNAVAILABLE),
    Entry("squad", ("qa",), "rajpurkar/squad", splits=("train", "validation"), aliases=("rajpurkar/squad",)),
    Entry("squad_v2", ("qa",), "rajpurkar/squad_v2", splits=("train", "validation"), aliases=("rajpurkar/squad_v2",)),
    Entry("codeparrot-ds-train", ("clm",), "huggingface-course/codeparrot-ds-train", splits=("train",),
          aliases=("huggingface-course/codeparrot-ds-train",)),
    Entry("codeparrot-ds-valid", ("clm",), "huggingface-course/codeparrot-ds-valid", splits=("validation",),
          aliases=("huggingface-course/codeparrot-ds-valid",)),
)


def lookup(spec: str) -> Entry | None:
    """The catalogue entry a `--data` name (or one of its aliases) stands for; case is ignored."""
    key = spec.strip().lower()
    for entry in CATALOG:
        if key == entry.name or key in (a.lower() for a in entry.aliases):
            return entry
    return None


def split_revision(spec: str) -> tuple[str, str | None]:
    """`owner/name@refs/convert/parquet` -> ("owner/name", "refs/convert/parquet")."""
    path, sep, revision = spec.partition("@")
    return (path, revision) if sep and path and revision else (spec, None)


def parquet_files(source: str, config: str, splits) -> dict:
    """`hf://` patterns of the Parquet conversion's files, per split."""
    rev = PARQUET_REVISION.replace("/", "%2F")
    return {split: f"hf://datasets/{source}@{rev}/{config}/{split}/*.parquet" for split in splits}


def _config_of(entry: Entry, config: str | None) -> str | None:
    """--data-config, or the entry's configuration (the one the course uses)."""
    return config or entry.config


def resolved_source(spec: str, config: str | None = None) -> dict | None:
    """What `--data spec` (with `--data-config config`) loads, for the run's record; no network.

    None for a spec that is neither in the catalogue nor an `ID@REVISION` hub spec."""
    entry = lookup(spec)
    if entry is None:
        path, revision = split_revision(spec)
        if revision is None:
            return None
        return {"name": None, "spec": spec, "source": path, "revision": revision, "config": config}
    if entry.unavailable:
        return {"name": entry.name, "spec": spec, "source": None, "unavailable": entry.unavailable}
    cfg = _config_of(entry, config)
    out = {"name": entry.name, "spec": spec, "source": entry.source,
           "kind": "parquet-conversion" if entry.parquet else "hub", "config": cfg, "splits": list(entry.splits)}
    if entry.parquet:
        out["revision"] = PARQUET_REVISION
        out["data_files"] = parquet_files(entry.source, cfg, entry.splits)
    if entry.labels:
        out["label_columns"] = list(entry.labels)
        out["labels_from"] = entry.labels_from
    return out


def describe(src: dict) -> str:
    """`eriktks/conll2003 (the Hub's Parquet conversion, refs/convert/parquet, config conll2003; …)`."""
    parts = []
    if src.get("kind") == "parquet-conversion":
        parts.append(f"the Hub's Parquet conversion, {src['revision']}")
    if src.get("config"):
        parts.append(f"config {src['config']}")
    if src.get("splits"):
        parts.append("splits " + "/".join(src["splits"]))
    text = ", ".join(parts)
    if src.get("label_columns"):
        text += f"; label names of {', '.join(src['label_columns'])} from {src['labels_from']}"
    return f"{src['source']} ({text})" if text else src["source"]


# ---- loading ----------------------------------------------------------------------------------------
def load_hub_dataset(spec: str, config: str | None = None, streaming: bool = False):
    """`--data spec` from the Hub as a DatasetDict (an IterableDatasetDict when streaming).

    Catalogue names load their resolved source with their label names; any other hub id is passed
    to `datasets.load_dataset` (`ID@REVISION` loads that revision; with the Parquet conversion's
    revision, `config` names its folder).  Every failure is one `NlpfitError` line."""
    import datasets

    extra = {"streaming": True} if streaming else {}
    entry = lookup(spec)
    if entry is not None:
        if entry.unavailable:
            raise NlpfitError(f"--data {spec}: {entry.unavailable}")
        src = resolved_source(spec, config)
        info(f"--data {spec}: loading {describe(src)}")
        try:
            if entry.parquet:
                dsd = datasets.load_dataset("parquet", data_files=src["data_files"], **extra)
            else:
                dsd = datasets.load_dataset(entry.source, src["config"], **extra)
        except Exception as exc:
            raise _load_error(spec, exc, src["source"]) from None
        return restore_labels(dsd, entry.labels, f"--data {spec}")
    path, revision = split_revision(spec)
    try:
        if revision is None:
            return datasets.load_dataset(spec, config, **extra)
        if revision == PARQUET_REVISION and config:  # the conversion has a folder per configuration
            return datasets.load_dataset(path, revision=revision, data_dir=config, **extra)
        return datasets.load_dataset(path, config, revision=revision, **extra)
    except Exception as exc:
        raise _load_error(spec, exc) from None


def _load_error(spec: str, exc: Exception, source: str | None = None) -> NlpfitError:
    import datasets

    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    if SCRIPT_ERROR in msg:
        script = msg.rsplit(" ", 1)[-1]
        path = split_revision(source or spec)[0]
        return NlpfitError(
            f"--data {spec}: this hub dataset is a loading script ({script}), which datasets {datasets.__version__} "
            f"no longer runs; use its Parquet conversion (--data {path}@{PARQUET_REVISION}, with --data-config "
            "naming its configuration) or convert it to Parquet / JSON Lines files and pass those")
    hint = " (no network? HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
    via = f" [resolved to {source}]" if source and source != spec else ""
    return NlpfitError(f"--data {spec}: cannot load this hub dataset{hint}: {msg}{via}")


def restore_labels(dsd, labels: dict, where: str):
    """Give integer tag / label columns the catalogue's ClassLabel names (a Parquet conversion may
    carry plain ints); columns that already are ClassLabels keep their own names."""
    import datasets

    if not labels:
        return dsd
    out = {}
    for split, ds in dsd.items():
        feats = ds.features
        for col, names in labels.items():
            if feats is None or col not in feats:
                continue
            feat = feats[col]
            inner = getattr(feat, "feature", None)
            target = inner if inner is not None else feat
            if isinstance(target, datasets.ClassLabel):
                if list(target.names) != list(names):
                    warn(f"{where} ({split}): {col} has its own label names, kept: "
                         f"{', '.join(target.names[:5])} … (the catalogue lists {', '.join(names[:5])} …)")
                continue
            if not (isinstance(target, datasets.Value) and "int" in target.dtype):
                continue  # tag names as strings: read as they are
            label = datasets.ClassLabel(names=list(names))
            new = dataclasses.replace(feat, feature=label) if inner is not None else label
            low, high = _id_range(ds, col)
            if low is not None and (low < 0 or high >= len(names)):
                raise NlpfitError(f"{where} ({split}): {col} does not fit the {len(names)} label names of the "
                                  f"catalogue (its ids run from {low} to {high})")
            ds = ds.cast_column(col, new)
        out[split] = ds
    return type(dsd)(out)


def _id_range(ds, col: str) -> tuple:
    """(smallest, largest) id of an int or list-of-int column of a Dataset; (None, None) for a
    stream (its rows are not read up front) or an empty column."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(ds, datasets.Dataset):
        return None, None
    arr = ds.data.column(col)
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        arr = pc.list_flatten(arr)
    got = pc.min_max(arr).as_py()
    return got["min"], got["max"]


# ---- `nlpfit datasets` -------------------------------------------------------------------------------
def rows() -> list[dict]:
    out = []
    for e in CATALOG:
        if e.unavailable:
            source = "none (withdrawn from the Hub; see below)"
        elif e.parquet:
            source = f"{e.source} @ {PARQUET_REVISION} ({e.config})"
        else:
            source = e.source + (f" ({e.config})" if e.config else "")
        configs = e.accepted_configs()
        out.append({"name": e.name, "task": ", ".join(e.tasks), "source": source,
                    "splits": ", ".join(e.splits) or "-",
                    "configs": ", ".join(configs) if len(configs) > 1 else "",
                    "aliases": ", ".join(e.aliases)})
    return out


def table() -> str:
    """The catalogue as a text table (what `nlpfit datasets` prints)."""
    cols = ("name", "task", "source", "splits")
    data = rows()
    width = {c: max(len(c), *(len(r[c]) for r in data)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols).rstrip(),
             "  ".join("-" * width[c] for c in cols)]
    lines += ["  ".join(r[c].ljust(width[c]) for c in cols).rstrip() for r in data]
    lines.append("")
    for r in data:
        notes = []
        if r["aliases"]:
            notes.append(f"also --data {r['aliases']}")
        if r["configs"]:
            notes.append(f"--data-config {r['configs']}")
        if notes:
            lines.append(f"{r['name']}: " + "; ".join(notes))
    for e in CATALOG:
        if e.unavailable:
            lines.append(f"{e.name}: {e.unavailable}")
    lines.append("label names restored from the catalogue: " + "; ".join(
        f"{e.name} {', '.join(e.labels)} ({e.labels_from})" for e in CATALOG if e.labels))
    return "\n".join(lines)
