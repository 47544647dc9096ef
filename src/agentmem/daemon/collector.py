"""Garbage collection in the daemon process: full collections off the request path, budgeted.

The store keeps millions of long-lived objects (a conversation's message nodes, chunk entries,
refs) that reference counting frees on its own. CPython collects its oldest generation whenever
that generation has grown by a quarter since the last full collection, walking every tracked
object each time: a store taking 200,000 distinct 1 KiB SMUs (800,000 tracked objects) ran 7
full collections of ~57 ms, 2.0 us of each ~10 us ``alloc_smu`` (20 %), the young generations
0.4 us; a 30-agent seed swarm's daemon spent 1.4 s of its 19 s in full collections. They grow
with the store, and each one stalls every request queued behind it.

So the daemon process stops automatic collection at the young generations (they still find the
short-lived cycles of requests and connections within a few hundred allocations) and its
maintenance tick runs the full collection, when anything reached the oldest generation since the
last one and that one cost at most :data:`BUDGET` of the time since: every tick for a small
store, once in 100 s for one whose full collection takes a second (the same rule as the
statistics' walks, ``daemon/observe.py``). Objects made while starting are frozen: never walked.

Only the daemon process installs this (``run_daemon``): a program that runs the store in-process
keeps its own collector settings. Every collection's CPU time is counted (``gc_cpu_seconds`` of
the daemon's statistics): the callbacks run on the loop thread, where the collections happen.
"""

from __future__ import annotations

import gc
import time
from typing import Final

#: Share of wall time full collections may take.
BUDGET: Final = 0.01
#: Threshold of the oldest generation that no count reaches (a C int): no automatic full pass.
_NEVER: Final = 2**31 - 1


class Collector:
    """The daemon's collection policy and its clock. Not thread-safe: the loop thread only."""

    def __init__(self) -> None:
        #: CPU seconds of every collection since :meth:`install`, young and full.
        self.cpu_seconds = 0.0
        #: Full collections run by :meth:`tick`.
        self.full_collections = 0
        self._started = 0.0
        self._last_cost = 0.0
        self._last_at = time.monotonic()
        self._installed = False

    def install(self) -> None:
        """Freeze what exists, stop automatic full collections, start counting CPU."""
        if self._installed:
            return
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)
        gc.callbacks.append(self._clock)
        self._installed = True

    def uninstall(self) -> None:
        """Automatic full collections again (CPython's default threshold); frozen objects stay."""
        if not self._installed:
            return
        gc.callbacks.remove(self._clock)
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, 10)
        self._installed = False

    def _clock(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.cpu_seconds += time.thread_time() - self._started

    def tick(self, now: float | None = None) -> bool:
        """Run a full collection if one is due (see the module docstring); True if it ran."""
        if not self._installed or gc.get_count()[2] == 0:
            return False  # nothing moved to the oldest generation since the last full pass
        if now is None:
            now = time.monotonic()
        if now - self._last_at < self._last_cost / BUDGET:
            return False
        t0 = time.thread_time()
        gc.collect()
        self._last_cost = time.thread_time() - t0
        self._last_at = time.monotonic()
        self.full_collections += 1
        return True
