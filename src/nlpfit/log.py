"""Console output: progress messages and warnings go to stderr, results to stdout."""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") in ("0", "-1")


def info(msg: str) -> None:
    if is_main_process():
        print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    if is_main_process():
        print(f"warning: {msg}", file=sys.stderr, flush=True)
