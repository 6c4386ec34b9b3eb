"""The checkpoints both engines write: `.OUT.nlpfit-tmp/checkpoints/checkpoint-STEP`.

A checkpoint is written aside, in `checkpoints/.partial/checkpoint-STEP`, and renamed into place
once every file is in it; `state.json` (where the loop is, the run's figures so far) is written
last, itself by an atomic rename.  So a `checkpoint-STEP` folder is always complete: a run killed
at any moment, SIGKILL included, leaves its previous checkpoint as the newest, and `--resume`
never picks a partial one (it also requires `state.json`).  `--save-total-limit K` keeps the
newest K.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

PARTIAL = ".partial"
STATE = "state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def staging(folder: Path, step: int) -> Path:
    """Where checkpoint `step` is written before it is renamed into `folder`."""
    return folder / PARTIAL / f"checkpoint-{step}"


def write_json(path: Path, obj) -> None:
    """Write JSON by an atomic rename: the file is either the old one or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def publish(written: Path, state: dict, keep: int) -> Path:
    """Add `state.json` to a checkpoint written aside, rename it into place, keep the newest `keep`."""
    write_json(written / STATE, state)
    final = written.parent.parent / written.name
    if final.exists():  # a checkpoint of the same step from an earlier attempt of this run
        shutil.rmtree(final)
    os.replace(written, final)
    for old in complete(final.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(folder: Path) -> list[Path]:
    """The complete checkpoints in `folder`, oldest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("checkpoint-*")
             if (m := _NAME.match(p.name)) and (p / STATE).is_file()]
    return [p for _, p in sorted(found)]


def newest(folder: Path) -> Path | None:
    found = complete(folder)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE).read_text(encoding="utf-8"))


def clear_partial(folder: Path) -> None:
    """Drop what a killed run left half-written (called before resuming)."""
    shutil.rmtree(folder / PARTIAL, ignore_errors=True)
