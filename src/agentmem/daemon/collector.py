"""Garbage collection in the daemon process: counted, and full collections on the heap's growth.

The store keeps millions of long-lived objects (a conversation's message nodes, chunk entries,
refs) that reference counting frees on its own. CPython collects its oldest generation whenever
that generation has grown by a quarter since the last full collection, walking every tracked
object each time: ~5 walks of each object as a store grows, and each one stalls the requests
queued behind it. A 100-agent seed swarm's daemon spent 8.9 s of its 105 in collections (18
full ones, 6.3 s of 8.1 in a run that counted them apart); a store taking 200,000 distinct 1 KiB
SMUs, 20 % of ``alloc_smu``'s CPU.

So the daemon process keeps the young generations automatic (they find the short-lived cycles
of requests and connections within a few hundred allocations) and runs the full collection from
its maintenance tick, when the heap has doubled (:data:`GROWTH`, in pymalloc blocks, measured
from its smallest since the last one: ~2 walks of each object as a store grows) and the last
one cost at most :data:`BUDGET` of the time since: the same swarm, 3.1 s of collections in all.
A daemon whose heap does not grow runs none: an old cycle that becomes garbage waits for the
next growth, and garbage that piles up is growth. Objects made while starting are frozen
(never walked). A full collection on any promotion to the
oldest generation within the budget alone would keep an idle daemon collecting for ever (its
statistics allocate every second).

Only the daemon process installs this (``run_daemon``): a program that runs the store in-process
keeps its own collector settings. Every collection's CPU is counted (``gc_cpu_seconds``). A
collection runs on whichever thread allocated (the loop's, now and then the metrics thread's)
and holds the GIL from its start callback to its stop callback: each is clocked on one
thread's ``thread_time`` and no two overlap.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Final

#: Growth of the heap (pymalloc blocks, from its smallest since the last full collection) that
#: brings the next full collection: 1.0, when it has doubled.
GROWTH: Final = 1.0
#: Share of wall time full collections may take.
BUDGET: Final = 0.01
#: Threshold of the oldest generation that no count reaches (a C int): no automatic full pass.
_NEVER: Final = 2**31 - 1
#: CPython's own threshold of the oldest generation, restored by :meth:`Collector.uninstall`.
_CPYTHON_OLDEST: Final = 10


class Collector:
    """The daemon process's collection policy and its clock. Install, tick and uninstall from
    the loop thread; the callbacks run under the GIL of whichever thread collects."""

    def __init__(self, *, growth: float = GROWTH, budget: float = BUDGET) -> None:
        self.growth = growth
        self.budget = budget
        #: CPU seconds of every collection since :meth:`install`, young and full.
        self.cpu_seconds = 0.0
        #: Full collections (of the oldest generation) since :meth:`install`, any caller's.
        self.full_collections = 0
        self._started = 0.0
        self._installed = False
        self._last_at = time.monotonic()
        self._last_cost = 0.0
        self._base = 0

    def install(self) -> None:
        """Freeze what exists, stop automatic full collections, start counting. Idempotent."""
        if self._installed:
            return
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)
        gc.callbacks.append(self._clock)
        self._base = sys.getallocatedblocks()
        self._last_at = time.monotonic()
        self._installed = True

    def uninstall(self) -> None:
        """CPython's automatic full collections again; frozen objects stay frozen. Idempotent."""
        if not self._installed:
            return
        gc.callbacks.remove(self._clock)
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _CPYTHON_OLDEST)
        self._installed = False

    def _clock(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        self.cpu_seconds += time.thread_time() - self._started
        if info["generation"] == 2:
            self.full_collections += 1

    def tick(self, now: float | None = None) -> bool:
        """Run a full collection if one is due (see the module docstring); True if it ran.
        ~20 us without one (the heap's blocks are counted per arena)."""
        if not self._installed:
            return False
        blocks = sys.getallocatedblocks()
        self._base = min(self._base, blocks)
        if blocks < self._base * (1 + self.growth):
            return False
        if now is None:
            now = time.monotonic()
        if now - self._last_at < self._last_cost / self.budget:
            return False
        t0 = time.thread_time()
        gc.collect()
        self._last_cost = time.thread_time() - t0
        self._last_at = time.monotonic()
        self._base = sys.getallocatedblocks()
        return True
