"""Server-wide caches bounded in bytes, entries and idle time, and handing memory back.

:class:`BudgetCache` is the one least-recently-used cache behind both the full-resolution
pixel cache (:mod:`inkapp.curation.pixels`) and the analysis-map cache
(:class:`inkapp.curation.analysis.AnalysisCache`): at most ``budget_bytes`` in all, at
most ``max_entries`` entries, and an entry unused for ``idle_s`` seconds (by default the
session time to live, :func:`session_ttl_s`: once every session that showed an image has
expired, nobody can ask for its pixels or maps again) is dropped by a sweeper thread.

Freed memory does not leave the process by itself: glibc keeps freed heap pages in its
per-thread arenas, so a server that analysed twenty 76-megapixel images stays at its
peak. The app serves large blocks from their own mappings (:func:`map_large_allocations`,
returned on ``free``), and after evictions or expiry that freed at least :data:`TRIM_BYTES`, whenever expiry
empties a cache, and on each pass of a cache's sweeper, :func:`release_memory` calls
``malloc_trim(0)``, which returns the free pages of every arena (including those between
live allocations) to the OS.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from inkapp.data.images import env_number

ENV_SESSION_TTL_S = "INKAPP_SESSION_TTL_S"
SESSION_TTL_S = 1800  # default: a session's state is dropped 30 min after its last update
#: Bytes freed by evictions since the last trim that make the next one worth its cost
#: (``malloc_trim`` walks every arena: a few milliseconds on a large heap).
TRIM_BYTES = 32 * 2**20
#: Fixed glibc mmap threshold set by :func:`map_large_allocations` (bytes).
MMAP_THRESHOLD_BYTES = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)
#: Longest pause of a cache's sweeper between two expiry passes, seconds.
SWEEP_MAX_INTERVAL_S = 60.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def session_ttl_s() -> float:
    """Seconds a session's state lives after its last update (``INKAPP_SESSION_TTL_S``, default 1800)."""
    return env_number(ENV_SESSION_TTL_S) or SESSION_TTL_S


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (AttributeError, OSError, TypeError):  # not glibc (musl, macOS, Windows)
        return None


def map_large_allocations(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every C allocation of at least ``threshold`` bytes from its own mapping, which
    goes back to the OS the moment it is freed (glibc ``mallopt(M_MMAP_THRESHOLD)``).

    glibc's default threshold starts at 128 KiB but rises (up to 32 MiB) each time a
    mapped block is freed, after which image-sized blocks (Pillow's 16 MiB blocks, model
    activations) come from the arenas and stay resident after ``free``. A fixed threshold
    also turns that rise off. Left alone when ``MALLOC_MMAP_THRESHOLD_`` is set (the
    operator chose). True when set; False without glibc.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))


def release_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim(0)``, every arena).

    True when memory was released; False when nothing could be or the C library has
    no ``malloc_trim``.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


class BudgetCache(Generic[K, V]):
    """Thread-safe LRU cache bounded in bytes (``size(value)`` each), entries and idle time.

    A value larger than the whole ``budget_bytes`` is not kept. ``idle_s`` (None: never)
    is how long an entry may go unused; a daemon sweeper thread, running only while the
    cache holds something, drops such entries every ``idle_s / 4`` seconds (at most
    :data:`SWEEP_MAX_INTERVAL_S`) and trims the heap on each pass, so what the requests
    in between freed (decodes, model passes, drawing) leaves the process within one
    interval. ``clock`` gives seconds (monotonic).
    """

    def __init__(self, budget_bytes: int, size: Callable[[V], int], idle_s: float | None = None,
                 max_entries: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if budget_bytes < 0:
            raise ValueError(f"cache budget must be ≥ 0 bytes, got {budget_bytes}")
        self.budget_bytes = int(budget_bytes)
        self.idle_s = idle_s
        self.max_entries = max_entries
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[V, int, float]] = OrderedDict()  # value, bytes, last use
        self._sweeper: threading.Thread | None = None
        self._freed = 0  # bytes dropped since the last trim
        self.nbytes = 0
        self.trims = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries[key] = (entry[0], entry[1], self._clock())
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, evicting the least recently used beyond the bounds."""
        size = self._size(value)
        with self._lock:
            self._drop(key)
            if size <= self.budget_bytes:
                self._entries[key] = (value, size, self._clock())
                self.nbytes += size
            while self._entries and (self.nbytes > self.budget_bytes
                                     or (self.max_entries is not None and len(self._entries) > self.max_entries)):
                self._drop(next(iter(self._entries)))
            if self._entries and self.idle_s is not None and self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep, name="inkapp-cache-sweeper", daemon=True)
                self._sweeper.start()
        self._trim(False)

    def expire(self) -> int:
        """Drop the entries unused for ``idle_s`` seconds or more; return how many."""
        if self.idle_s is None:
            return 0
        with self._lock:
            now = self._clock()
            idle = [k for k, (_, _, used) in self._entries.items() if now - used >= self.idle_s]
            for key in idle:
                self._drop(key)
            emptied = bool(idle) and not self._entries
        self._trim(emptied)
        return len(idle)

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.nbytes -= entry[1]
            self._freed += entry[1]

    def _trim(self, force: bool) -> None:
        with self._lock:
            due = self._freed >= TRIM_BYTES or (force and self._freed > 0)
            if due:
                self._freed = 0
        if due:
            release_memory()
            self.trims += 1

    def _sweep(self) -> None:
        assert self.idle_s is not None
        interval = min(max(self.idle_s / 4, 0.01), SWEEP_MAX_INTERVAL_S)
        while True:
            time.sleep(interval)
            self.expire()
            release_memory()  # also what requests freed since the last pass (decodes, model passes, drawing)
            with self._lock:
                if not self._entries:
                    self._sweeper = None
                    return
