"""An offline summarization corpus: Python standard-library docstrings, body -> summary line.

PEP 257 asks a docstring to open with a one-line summary, then a blank line, then a longer
description: real text written by people, where the first line summarises the rest.  The modules are
parsed with `ast` (nothing is imported or run), so the corpus is the same for one Python version.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import sysconfig
from pathlib import Path

_SPACE = re.compile(r"\s+")


def _pairs_of(source: str) -> list[tuple[str, str]]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            continue
        doc = ast.get_docstring(node, clean=True)
        if not doc or "\n\n" not in doc:
            continue
        head, body = doc.split("\n\n", 1)
        summary = _SPACE.sub(" ", head).strip()
        # the body up to the first code example / field list, as flowing text
        paras = []
        for para in body.split("\n\n"):
            if para.lstrip().startswith((">>>", ":", "..", "Args", "Arguments", "Returns", "Parameters", "Example")):
                break
            if para.startswith((" ", "\t")) or "--" in para[:3] or "|" in para:
                continue
            paras.append(_SPACE.sub(" ", para).strip())
        text = "\n".join(p for p in paras if p)
        n_sum, n_text = len(summary.split()), len(text.split())
        if 4 <= n_sum <= 30 and 20 <= n_text <= 400 and summary[-1:] in ".!?" and "*" not in summary:
            out.append((text, summary))
    return out


def build(path: Path) -> Path:
    """Write {"text", "summary", "module"} JSON Lines of the standard library's docstrings."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rows, seen = [], set()
    for file in sorted(stdlib.rglob("*.py")):
        rel = file.relative_to(stdlib)
        if rel.parts[0] in ("test", "site-packages", "idlelib", "lib2to3", "tkinter", "turtledemo") or "tests" in rel.parts:
            continue
        try:
            source = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for text, summary in _pairs_of(source):
            if text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "summary": summary, "module": str(rel.with_suffix("")).replace(os.sep, ".")})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
    return path


def docstring_corpus() -> str:
    """Path of the corpus (built once into the user's cache folder)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nlpfit"
    path = cache / f"stdlib-docstrings-py{sys.version_info.major}{sys.version_info.minor}.jsonl"
    if not path.is_file():
        build(path)
    return str(path)
