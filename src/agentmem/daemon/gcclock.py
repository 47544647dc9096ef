"""How much of the daemon's CPU goes to Python's garbage collection.

The store keeps millions of long-lived objects (a conversation's message nodes, chunk entries,
refs), freed by reference counting; CPython's cyclic collector walks all of them in each full
collection, which runs whenever the oldest generation has grown by a quarter. In a 100-agent
seed swarm the daemon's collections took 8.1 s of its ~100 s (18 full ones, 6.3 s), in a store
taking 200,000 distinct 1 KiB SMUs 20 % of ``alloc_smu``'s CPU.

Taking the full collections off the request path (none automatic, one from the maintenance tick
within 1 % of wall time) cut the swarm's collections to 3.4 s but not the daemon's CPU (two
runs each way: 90.6 and 80.2 s against 79.9 and 74.3) and lengthened the turns (p50 416 and
368 ms against 316 and 275): the collector keeps CPython's schedule and is only counted.

:class:`GcClock` counts every collection's CPU (``gc_cpu_seconds`` of the daemon's statistics)
and the full ones. Only the daemon process installs it (``run_daemon``). A collection runs on
whichever thread allocated last (the loop's, now and then the metrics thread's) and holds the
GIL from its start callback to its stop callback, so each is clocked on one thread's
``thread_time`` and no two overlap.
"""

from __future__ import annotations

import gc
import time


class GcClock:
    """Counts the process's garbage collections while installed. Install and uninstall from
    one thread; the callback itself runs under the GIL of whichever thread collects."""

    def __init__(self) -> None:
        #: CPU seconds of every collection since :meth:`install`, young and full.
        self.cpu_seconds = 0.0
        #: Full collections (of the oldest generation) since :meth:`install`.
        self.full_collections = 0
        self._started = 0.0

    def install(self) -> None:
        """Start counting (idempotent)."""
        if self._clock not in gc.callbacks:
            gc.callbacks.append(self._clock)

    def uninstall(self) -> None:
        """Stop counting (idempotent)."""
        if self._clock in gc.callbacks:
            gc.callbacks.remove(self._clock)

    def _clock(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        self.cpu_seconds += time.thread_time() - self._started
        if info["generation"] == 2:
            self.full_collections += 1
