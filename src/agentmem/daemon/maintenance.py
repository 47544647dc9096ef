"""Work the daemon does between requests, about once a second: tiering, reclaiming space.

Each domain's store runs its own pass (``Store.maintain``: content unused for the idle times
goes warm or cold, budgets, orphans restored after a crash, pack and journal compaction). Hot
segment compaction is decided here: the store knows how to compact; the daemon decides when.
A domain is compacted when the holes left by freed chunks in its hot segments reach both
``MIN_FREED_BYTES`` and ``MIN_FREED_RATIO`` of what was appended: compaction walks every chunk
of the domain (O(chunks), ~10 ms per 100,000 chunks here), so it must not run for a few
kilobytes of holes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from agentmem.daemon.service import Service

#: Seconds between maintenance passes.
INTERVAL: Final = 1.0
#: Holes below this many bytes are not worth a pass over the chunk index.
MIN_FREED_BYTES: Final = 8 << 20
#: ... nor holes below this share of the bytes appended to segments.
MIN_FREED_RATIO: Final = 0.25


def tick(service: Service) -> int:
    """One maintenance pass over every domain: the store's own (tiering, disk), then segment
    compaction; returns bytes of segment space reclaimed."""
    reclaimed = 0
    for domain in service.domains.values():
        domain.store.maintain()
        hot = domain.store.hot
        used = sum(seg.used for seg in hot)
        freed = used - hot.live_bytes
        if freed >= MIN_FREED_BYTES and freed >= MIN_FREED_RATIO * used:
            reclaimed += domain.store.compact()
    return reclaimed
