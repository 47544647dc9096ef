"""Work the daemon does between requests, about once a second: tiering, reclaiming space.

Each domain's store runs its own pass (``Store.maintain``: content unused for the idle times
goes warm or cold, budgets, orphans restored after a crash, pack and journal compaction). Hot
segment compaction is decided here: the store knows how to compact; the daemon decides when.
A domain is compacted when the holes left by freed chunks in its hot segments reach both
``MIN_FREED_BYTES`` and ``MIN_FREED_RATIO`` of what was appended: compaction walks every chunk
of the domain (O(chunks), ~10 ms per 100,000 chunks here), so it must not run for a few
kilobytes of holes. It runs in steps (``Store.compact_steps``), COMPACT_PASS_SECONDS a pass,
the passes BACKLOG_INTERVAL apart until it ends, serving requests in between.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from agentmem import heap
from agentmem.codec import codec_uses, release_contexts
from agentmem.store import steps

if TYPE_CHECKING:
    from agentmem.daemon.service import Service
    from agentmem.store import Store

log = logging.getLogger("agentmem.daemon")

#: Seconds between maintenance passes.
INTERVAL: Final = 1.0
#: Seconds to the next pass when the last one left idle handles due (``tiering.maintain``):
#: time for the loop to answer what queued while it demoted (a pass is
#: ``tiering.IDLE_PASS_SECONDS``), and for the agents' processes to have the CPU: passes back
#: to back took a core from them while 100 seed-profile agents loaded (spawn p50 0.92-1.24
#: ms, against 0.64 with this gap).
BACKLOG_INTERVAL: Final = 0.01
#: Seconds of segment compaction a pass runs (then the next pass comes after
#: BACKLOG_INTERVAL): the scan of the chunk index and the groups' moves go in steps of ~3 ms.
COMPACT_PASS_SECONDS: Final = 0.01
#: Holes below this many bytes are not worth a pass over the chunk index.
MIN_FREED_BYTES: Final = 8 << 20
#: ... nor holes below this share of the bytes appended to segments.
MIN_FREED_RATIO: Final = 0.25
#: Bytes moved between tiers or of warm frames dropped since the heap was last given back
#: after which a tick gives the heap's free pages back to the system (``agentmem/heap.py``):
#: every move decodes and encodes through transient buffers, every dropped frame leaves a hole.
TRIM_AFTER_BYTES: Final = 16 << 20
#: Ticks (seconds) in a row without a frame compressed or decoded after which the codec's cached
#: contexts and every dictionary's digested forms are freed and the heap given back. Held,
#: they are ~11 MiB in a daemon that demoted seed-profile conversations (two level-6
#: compressors of 1 MiB groups, two decompressors, one with a digested dictionary); built
#: again on the next use for ~1 ms.
CODEC_IDLE_TICKS: Final = 3


def run(service: Service, clock: Callable[[], float] = time.process_time) -> None:
    """One :func:`tick`, its CPU (by ``clock``) added to ``maintenance_cpu_seconds``; a
    failure is logged, never raised: the daemon's loop and the in-process thread both go on."""
    t0 = clock()
    try:
        tick(service)
    except Exception:
        log.error("maintenance tick failed:\n%s", traceback.format_exc())
    service.maintenance_cpu_seconds += clock() - t0


def _compact(store: Store, deadline: float) -> int:
    """Go on with the store's segment compaction until ``deadline``; bytes reclaimed once it
    ends. A step that raises drops it (a later pass starts afresh)."""
    assert store.compaction is not None

    def ended() -> None:
        store.compaction = None

    return steps.resume(store.compaction, deadline, time.monotonic, ended) or 0


def tick(service: Service) -> int:
    """One maintenance pass over every domain: the store's own (tiering, disk), then segment
    compaction, then the heap given back after enough churn, and the codec's caches freed once
    it has been idle for CODEC_IDLE_TICKS; returns bytes of segment space reclaimed."""
    reclaimed = 0
    churn = 0  # bytes moved between tiers and frame bytes dropped, ever, in every domain
    backlog = False
    for domain in service.domains.values():
        done = domain.store.maintain()
        backlog = backlog or bool(done.get("backlog"))
        service.moved_bytes += done["warm"] + done["pressure"] + done.get("cold", 0)
        store = domain.store
        if store.compaction is None:
            hot = store.hot
            used = sum(seg.used for seg in hot)
            freed = used - hot.live_bytes
            if freed >= MIN_FREED_BYTES and freed >= MIN_FREED_RATIO * used:
                store.compaction = store.compact_steps()
        if store.compaction is not None:
            reclaimed += _compact(store, time.monotonic() + COMPACT_PASS_SECONDS)
            backlog = backlog or store.compaction is not None
        churn += domain.store.warm.freed_frame_bytes
    service.maintenance_backlog = backlog
    churn += service.moved_bytes
    if churn - service.churn_at_trim >= TRIM_AFTER_BYTES:
        if heap.give_back():
            service.heap_trims += 1
        service.churn_at_trim = churn
    uses = codec_uses()
    if uses != service.codec_uses_seen:
        service.codec_uses_seen, service.codec_idle_ticks = uses, 0
    else:
        service.codec_idle_ticks += 1
        if service.codec_idle_ticks == CODEC_IDLE_TICKS:
            release_contexts()
            for domain in service.domains.values():
                domain.store.dictionaries.release_digests()
            service.codec_releases += 1
            if heap.give_back():
                service.heap_trims += 1
    return reclaimed
