"""Work the daemon does between requests, at most once a second: reclaiming segment space.

Policy lives here, not in the store: the store knows how to compact; the daemon decides when.
A domain is compacted when the holes left by freed chunks in its hot segments reach both
``MIN_FREED_BYTES`` and ``MIN_FREED_RATIO`` of what was appended: compaction walks every chunk
of the domain (O(chunks), ~10 ms per 100,000 chunks here), so it must not run for a few
kilobytes of holes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from agentmem.daemon.service import Service
    from agentmem.store import Store
    from agentmem.store.policy import EvictionPolicy

#: Seconds between maintenance passes.
INTERVAL: Final = 1.0
#: Holes below this many bytes are not worth a pass over the chunk index.
MIN_FREED_BYTES: Final = 8 << 20
#: ... nor holes below this share of the bytes appended to segments.
MIN_FREED_RATIO: Final = 0.25


def enforce_budget(store: Store, policy: EvictionPolicy) -> int:
    """Demote what ``policy`` chooses until the hot tier is within ``hot_budget_bytes``;
    returns plain bytes moved. The policy decides; the store acts."""
    budget = store.config.hot_budget_bytes
    over = store.hot.live_bytes - budget
    if not budget or over <= 0:
        return 0
    moved = 0
    for handle in policy.choose(store.candidates(), over, store.clock()):
        moved += store.demote(handle)
        if store.hot.live_bytes <= budget:
            break
    return moved


def demote_idle(store: Store) -> int:
    """Demote every unpinned handle unused for ``warm_after_seconds``; plain bytes moved.

    Content several handles hold (a shared prompt) is left to the budget: one agent's idleness
    says nothing of the others'.
    """
    after = store.config.warm_after_seconds
    if not after:
        return 0
    cutoff = store.clock() - after
    return sum(
        store.demote(c.handle) for c in store.candidates() if c.touched <= cutoff and c.holders == 1
    )


def tick(service: Service) -> int:
    """One maintenance pass over every domain: keep hot bytes within budget, then reclaim
    segment space; returns bytes of segment space reclaimed."""
    reclaimed = 0
    for domain in service.domains.values():
        demote_idle(domain.store)
        enforce_budget(domain.store, domain.policy)
        hot = domain.store.hot
        used = sum(seg.used for seg in hot)
        freed = used - hot.live_bytes
        if freed >= MIN_FREED_BYTES and freed >= MIN_FREED_RATIO * used:
            reclaimed += domain.store.compact()
    return reclaimed
