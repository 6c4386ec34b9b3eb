"""The host allocator setting (nlpfit.allocator): freed tensors stay in the process for reuse, and
nothing changes where the user chose the allocator's settings.  Each case runs in a fresh process,
since mallopt's settings last for the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")

#: make, touch and free a 256 MB tensor; the resident memory (MB) while it lives and after it is freed
PROBE = r"""
import json, os, sys
import torch
from nlpfit.allocator import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

kept = keep_freed_memory()
again = keep_freed_memory()
x = torch.ones(64 * 2**20)
live = rss_mb()
del x
print(json.dumps({"kept": kept, "again": again, "live": live, "freed": rss_mb()}))
"""


def probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD",
                                                                                             "NLPFIT_SYSTEM_MALLOC")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_freed_tensors_stay_in_the_process():
    got = probe()
    assert got["kept"] is True and got["again"] is True
    assert got["freed"] > got["live"] - 32  # the 256 MB block is kept for the next step's tensors


def test_the_system_allocator_by_default_hands_the_block_back():
    got = probe(NLPFIT_SYSTEM_MALLOC="1")
    assert got["kept"] is False
    assert got["freed"] < got["live"] - 200  # unmapped at once: what every training step paid for again


@pytest.mark.parametrize("name", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"])
def test_the_users_own_allocator_settings_are_left_alone(name):
    assert probe(**{name: "65536" if name != "MALLOC_ARENA_MAX" else "2"})["kept"] is False
