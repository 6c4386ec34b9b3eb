"""The host memory allocator: freed tensors kept for reuse instead of handed back to the system, up to
a bound.

PyTorch's CPU tensors come from malloc.  glibc serves every block above its mmap threshold (128 KiB
at first, at most 32 MiB) with a fresh mmap and unmaps it again when the tensor is freed, and it
trims the top of its heap whenever 128 KiB lie free there.  A training step makes and frees the
same large activations, logits and gradients every time, so every step pays for the kernel to
fault in and zero the same pages again: on two cores `nlpfit train clm` runs 15-40% more tokens
per second with the blocks kept (see the README's Speed section).  `keep_freed_memory()` sets both thresholds
high (mallopt), as PyTorch's CPU tuning guides advise through jemalloc or tcmalloc: the blocks stay
in the process and the next step reuses them.  The process's resident memory then stays near its
peak rather than falling back between steps.

A freed block is reused only by a request it can hold, and PyTorch asks for 64-byte aligned blocks,
which glibc serves from a free block somewhat larger than the request.  Where small allocations
that outlive a step settle next to each freed block (torch.profiler's event records do, at every
operator), the freed blocks stay a little too small for the next step's same requests, and the
heap would grow at every step.  So a watchdog thread (`FreeMemoryBound`) looks five times a second
at the memory the process holds resident without using it and, once that has grown by more than
both `KEPT_FREE_FLOOR` and twice the most memory in use seen so far, hands it back (malloc_trim): what
normal steps keep for reuse stays, and no allocation pattern can grow resident memory without bound.

Nothing is changed where the allocator is not glibc's (or a glibc without mallinfo2, before 2.33),
or where /proc gives no RssAnon, or where the user set glibc's own variables (MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_ARENA_MAX, a glibc.malloc tunable in GLIBC_TUNABLES)
or NLPFIT_SYSTEM_MALLOC=1, or preloads another allocator (LD_PRELOAD).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

#: mallopt's parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap and are reused; only larger ones are mapped each time
MMAP_THRESHOLD = 1 << 30
#: free memory at the top of the heap kept rather than returned to the system
TRIM_THRESHOLD = (1 << 31) - 1
#: free memory held up to at least this much, or up to KEPT_FREE_FACTOR times the most memory in use seen
KEPT_FREE_FLOOR = 1 << 30
KEPT_FREE_FACTOR = 2
#: seconds between two looks of the watchdog
WATCH_INTERVAL = 0.2
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
                 "LD_PRELOAD")


class MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (malloc.h): byte counts over all arenas."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def rss_anon(pid: int | str = "self") -> int:
    """A process's anonymous resident memory in bytes (RssAnon; this process's by default), 0 where /proc
    does not say (or the process has ended)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class FreeMemoryBound:
    """The watchdog.  Every `interval` seconds it takes the memory the process holds resident without
    having it in use: its anonymous resident memory (RssAnon) less the bytes malloc has handed out
    (mallinfo2's `uordblks` and `hblkhd`).  That is the free heap pages kept for reuse, plus memory
    outside malloc (Python's object arenas, thread stacks), which the lowest value seen since the last
    hand-back (`held_base`) accounts for.  Once it has grown past that base by more than max(`floor`,
    `factor` times the most bytes in use seen: a step frees at its end what it used at its peak, and the
    heap's blocks do not fit exactly), malloc_trim(0) hands the pages of every free block back (the blocks
    stay, a request that reuses one faults its pages in again).  Runs in a daemon thread from
    `start()`; `trims` counts the hand-backs."""

    def __init__(self, libc, floor: int, factor: float, interval: float):
        self.mallinfo2, self.malloc_trim = libc.mallinfo2, libc.malloc_trim
        self.mallinfo2.restype, self.mallinfo2.argtypes = MallInfo2, []
        self.malloc_trim.restype, self.malloc_trim.argtypes = ctypes.c_int, [ctypes.c_size_t]
        self.floor, self.factor, self.interval = floor, factor, interval
        self.peak_in_use = 0
        self.held_base: int | None = None
        self.trims = 0

    def held(self) -> int:
        """Resident bytes not in use by malloc's callers; the bytes in use are folded into the peak."""
        info = self.mallinfo2()
        in_use = info.uordblks + info.hblkhd
        self.peak_in_use = max(self.peak_in_use, in_use)
        return rss_anon() - in_use

    def check(self) -> bool:
        """One look: whether it handed free memory back."""
        held = self.held()
        self.held_base = held if self.held_base is None else min(self.held_base, held)
        if held - self.held_base <= max(self.floor, self.factor * self.peak_in_use):
            return False
        self.malloc_trim(0)
        self.held_base = self.held()
        self.trims += 1
        return True

    def run(self) -> None:
        while True:
            self.check()
            time.sleep(self.interval)

    def start(self) -> "FreeMemoryBound":
        threading.Thread(target=self.run, name="nlpfit-free-memory-bound", daemon=True).start()
        return self


#: the process's watchdog once `keep_freed_memory()` has set the thresholds (a forked child starts its own)
watchdog: FreeMemoryBound | None = None


def _glibc():
    """glibc with mallopt and mallinfo2, or None (another C library, or a glibc before 2.33)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's, not musl's or another allocator's
        libc.mallopt, libc.mallinfo2, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _start_watchdog(libc) -> None:
    global watchdog
    watchdog = FreeMemoryBound(libc, KEPT_FREE_FLOOR, KEPT_FREE_FACTOR, WATCH_INTERVAL).start()


def _user_settings() -> bool:
    """Whether the user chose the allocator: glibc's variables, a malloc tunable, another allocator."""
    return (any(os.environ.get(name) for name in USER_SETTINGS)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


_lock = threading.Lock()
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds so freed blocks are reused, and start the watchdog that
    bounds what is kept (once per process, whichever thread asks first); whether they are set now."""
    global _kept
    with _lock:
        if _kept is None:
            _kept = _keep_freed_memory()
        return _kept


def _keep_freed_memory() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("NLPFIT_SYSTEM_MALLOC") == "1" or _user_settings():
        return False
    libc = _glibc()
    if libc is None or not rss_anon():  # without RssAnon the watchdog could not see what is kept
        return False
    try:
        _start_watchdog(libc)  # before the thresholds: a thread that cannot start leaves them as they were
    except RuntimeError:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return False
    os.register_at_fork(after_in_child=lambda: _start_watchdog(libc))  # a thread does not survive fork
    return True
