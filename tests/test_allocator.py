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


def run(script: str, *args: str, **env) -> str:
    """The last line `script` prints, run in a fresh process without the user's allocator settings
    (plus `env`)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD",
                                                                                             "NLPFIT_SYSTEM_MALLOC")}
    out = subprocess.run([sys.executable, "-c", script, *args], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()[-1]


def probe(**env) -> dict:
    return json.loads(run(PROBE, **env))


def test_freed_tensors_stay_in_the_process():
    got = probe()
    assert got["kept"] is True and got["again"] is True
    assert got["freed"] > got["live"] - 32  # the 256 MB block is kept for the next step's tensors


def test_the_system_allocator_by_default_hands_the_block_back():
    got = probe(NLPFIT_SYSTEM_MALLOC="1")
    assert got["kept"] is False
    assert got["freed"] < got["live"] - 200  # unmapped at once: what every training step paid for again


@pytest.mark.parametrize("name, value", [("MALLOC_MMAP_THRESHOLD_", "65536"), ("MALLOC_TRIM_THRESHOLD_", "65536"),
                                         ("MALLOC_ARENA_MAX", "2"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")])
def test_the_users_own_allocator_settings_are_left_alone(name, value):
    assert probe(**{name: value})["kept"] is False


def test_threads_asking_at_once_start_one_watchdog():
    """The Python API calls keep_freed_memory() from every train/evaluate/predict, maybe from several threads."""
    script = r"""
import threading
import nlpfit.allocator as allocator
barrier = threading.Barrier(8)
def ask():
    barrier.wait()
    allocator.keep_freed_memory()
askers = [threading.Thread(target=ask) for _ in range(8)]
for t in askers: t.start()
for t in askers: t.join()
print(sum(t.name == "nlpfit-free-memory-bound" for t in threading.enumerate()))
"""
    assert run(script) == "1"


#: the pattern that defeats reuse: a 48 MB tensor made and freed at every step, and a small tensor made
#: meanwhile that outlives the step (as torch.profiler's event records do at every operator); the peak
#: anonymous resident memory (MB) over 32 steps and the watchdog's hand-backs, with its floor set
PINNED = r"""
import json, sys
import torch
import nlpfit.allocator as allocator

allocator.KEPT_FREE_FLOOR = int(sys.argv[1])
allocator.KEPT_FREE_FACTOR = 0  # the floor alone, whatever the imports hold in use

def rss_anon_mb():
    return allocator.rss_anon() / 2**20

kept = allocator.keep_freed_memory()
pinned, start, peak = [], rss_anon_mb(), 0.0
for _ in range(32):
    step = torch.ones(12 * 2**20)
    pinned.append(torch.ones(16))
    del step
    allocator.watchdog.check()  # what its thread does five times a second
    peak = max(peak, rss_anon_mb())
print(json.dumps({"kept": kept, "growth": peak - start, "trims": allocator.watchdog.trims,
                  "thread": any(t.name == "nlpfit-free-memory-bound" for t in __import__("threading").enumerate())}))
"""


def pinned(floor: int) -> dict:
    return json.loads(run(PINNED, str(floor)))


def test_kept_free_memory_is_bounded_whatever_the_allocation_pattern():
    unbounded = pinned(1 << 40)  # no hand-back: every step's freed block is too small for the next step's
    assert unbounded["kept"] and unbounded["thread"] and unbounded["trims"] == 0
    assert unbounded["growth"] > 1200  # ~48 MB more at every step
    bounded = pinned(256 << 20)
    assert bounded["trims"] > 0
    assert bounded["growth"] < 256 + 2 * 48 + 64  # the floor, a step's block or two, and slack


def test_a_forked_worker_gets_its_own_watchdog():
    """datasets' map workers are forked: the thresholds carry over to them, so the bound must too."""
    script = r"""
import os, threading
import nlpfit.allocator as allocator
allocator.keep_freed_memory()
parent = allocator.watchdog
pid = os.fork()
if pid == 0:
    alive = any(t.name == "nlpfit-free-memory-bound" and t.is_alive() for t in threading.enumerate())
    os._exit(0 if alive and allocator.watchdog is not parent else 3)
print(os.waitpid(pid, 0)[1] >> 8)
"""
    assert run(script) == "0"
