"""Console output: progress messages and warnings go to stderr, results to stdout."""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") in ("0", "-1")


def _write(line: str) -> None:
    """A line on stderr, on its own line even while progress bars are drawn (from any thread)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()


def info(msg: str) -> None:
    if is_main_process():
        _write(msg)


def warn(msg: str) -> None:
    if is_main_process():
        _write(f"warning: {msg}")
