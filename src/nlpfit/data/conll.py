"""CoNLL column files: token in the first column, tag in the last, blank line between sentences."""

from __future__ import annotations

from pathlib import Path

from nlpfit import NlpfitError
from nlpfit.data import read_lines

#: column names of the 4-column CoNLL-2003 layout (token, POS, chunk, NER)
CONLL2003_COLUMNS = ("tokens", "pos_tags", "chunk_tags", "ner_tags")


def parse_conll(lines: list[str], where: str = "<text>") -> tuple[list[str], list[list[list[str]]]]:
    """Parse lines into sentences of rows; return (column names, sentences).

    Rows are whitespace-separated columns; `-DOCSTART-` lines are skipped; blank (or
    whitespace-only) lines end a sentence.  Every row of a file must have the same number of columns.
    """
    sentences: list[list[list[str]]] = []
    current: list[list[str]] = []
    ncols = None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        cols = line.split()
        if cols[0] == "-DOCSTART-":
            continue
        if ncols is None:
            if len(cols) < 2:
                raise NlpfitError(f"{where}:{i}: expected a token and a tag, found one column")
            ncols = len(cols)
        elif len(cols) != ncols:
            raise NlpfitError(f"{where}:{i}: {len(cols)} columns, earlier lines have {ncols}")
        current.append(cols)
    if current:
        sentences.append(current)
    if not sentences:
        raise NlpfitError(f"{where}: empty file (no sentences)")
    if ncols == 4:
        names = list(CONLL2003_COLUMNS)
    else:
        names = ["tokens"] + [f"col{j}" for j in range(1, ncols - 1)] + ["tags"]
    return names, sentences


def read_conll(path: Path):
    """A CoNLL file as a Dataset with one list column per CoNLL column."""
    import datasets

    if path.stat().st_size == 0:
        raise NlpfitError(f"{path}: empty file")
    names, sentences = parse_conll(read_lines(path), str(path))
    columns = {name: [[row[j] for row in sent] for sent in sentences] for j, name in enumerate(names)}
    return datasets.Dataset.from_dict(columns)
