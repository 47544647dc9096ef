"""How much of the daemon's CPU goes to Python's garbage collection.

The store keeps millions of long-lived objects (a conversation's message nodes, chunk entries,
refs), freed by reference counting; CPython's cyclic collector walks all of them in each full
collection, which runs whenever the oldest generation has grown by a quarter. In 100-agent seed
swarms the daemon's collections took 8.1 and 8.9 s of its 102 and 105 s (18 full ones, 6.3 s,
in the run that timed them apart); in a store taking 200,000 distinct 1 KiB SMUs, 20 % of
``alloc_smu``'s CPU.

Two schedules that take the full collections off the request path were measured in the
100-agent seed swarm and not kept: (1) none automatic, one from the maintenance tick whenever
anything reached the oldest generation and the last one cost at most 1 % of the time since:
collections 3.4 s, the daemon's CPU not lower beyond the runs' spread (90.6 and 80.2 s against
79.9 and 74.3; the same code varies by 25 % from run to run here), and an idle daemon would
keep collecting; (2) the same on the heap's doubling (pymalloc blocks): collections 2.9-3.1 s,
but agent spawn p50 0.76 and 1.04 ms against 0.51-0.62 in five runs of CPython's schedule
(likely one collection of the whole heap stalling the loop while agents connect). So the daemon
keeps CPython's schedule.

Kept instead: each full collection's survivors are frozen (``gc.freeze``), so the next full
collection walks only what reached the oldest generation since, not the whole store again
(CPython schedules them by the growth of that generation, so they come more often, each
walking only the last ones' growth). What a full collection leaves has just been proved
reachable; it can only become cyclic garbage later, and then waits in the frozen set for the
next whole collection (unfrozen, everything walked, the survivors frozen again), which the
daemon runs from its once-a-second tick at most every :data:`WHOLE_INTERVAL`. In 50-agent seed
swarms the full collections of the run found no garbage at all until the agents left (721
objects then: connections' own cycles), so the frozen set holds next to nothing it should not.

:class:`GcClock` counts every collection's CPU (``gc_cpu_seconds`` of the daemon's statistics)
and the full ones. Only the daemon process installs it (``run_daemon``). A collection runs on
whichever thread allocated last (the loop's, now and then the metrics thread's) and holds the
GIL from its start callback to its stop callback, so each is clocked on one thread's
``thread_time`` and no two overlap.
"""

from __future__ import annotations

import gc
import time

#: The longest a cycle that became garbage in the frozen set waits for a whole collection.
#: One whole collection of a 100-agent seed daemon (1.5 million objects) holds the loop
#: ~0.35 s: every 10 minutes, under 0.1 % of a core.
WHOLE_INTERVAL = 600.0


class GcClock:
    """Counts the process's garbage collections while installed and, with ``freeze``, freezes
    each full collection's survivors. Install, uninstall and :meth:`tick` from one thread; the
    callback itself runs under the GIL of whichever thread collects."""

    def __init__(self, freeze: bool = False, whole_interval: float = WHOLE_INTERVAL) -> None:
        #: CPU seconds of every collection since :meth:`install`, young and full.
        self.cpu_seconds = 0.0
        #: Full collections (of the oldest generation) since :meth:`install`.
        self.full_collections = 0
        #: Whole collections (the frozen set included) run by :meth:`tick`.
        self.whole_collections = 0
        self.freeze = freeze
        self.whole_interval = whole_interval
        self._started = 0.0
        self._froze = False  # anything frozen since the last whole collection
        self._last_whole = time.monotonic()

    def install(self) -> None:
        """Start counting (idempotent)."""
        if self._clock not in gc.callbacks:
            gc.callbacks.append(self._clock)

    def uninstall(self) -> None:
        """Stop counting and freezing (idempotent); what was frozen goes back to the oldest
        generation."""
        if self._clock in gc.callbacks:
            gc.callbacks.remove(self._clock)
        if self.freeze:
            gc.unfreeze()

    def tick(self, now: float | None = None) -> bool:
        """A whole collection if one is due (something was frozen, and :attr:`whole_interval`
        passed since the last); True if it ran."""
        now = time.monotonic() if now is None else now
        if not (self.freeze and self._froze and now - self._last_whole >= self.whole_interval):
            return False
        self._last_whole = now
        gc.unfreeze()
        gc.collect()  # its stop callback freezes the survivors again
        self._froze = False  # what that froze was just walked whole
        self.whole_collections += 1
        return True

    def _clock(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        self.cpu_seconds += time.thread_time() - self._started
        if info["generation"] == 2:
            self.full_collections += 1
            if self.freeze:
                # Right after a full collection every generation but the oldest is empty and
                # the oldest holds only what the collection found reachable.
                gc.freeze()
                self._froze = True
