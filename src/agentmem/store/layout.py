"""Where an SMU's bytes lie, and views of them: extents of hot segments, runs of chunks.

Reads are zero-copy where the layout allows: chunks adjacent in one container are merged into
one view, and an SMU whose chunks are all hot and contiguous is a single extent. Extents are
cached per SMU, keyed by the store's layout epoch (bumped whenever any chunk moves).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agentmem.states import SMUType, Tier
from agentmem.store.records import SMU, ChunkEntry, MessageNode, WarmGroup
from agentmem.store.segments import Segment

if TYPE_CHECKING:
    from agentmem.store.cold import ColdGroup
    from agentmem.store.store import Store


def extents_of(store: Store, smu: SMU) -> tuple[tuple[Segment, int, int], ...] | None:
    """Hot content as merged (segment, offset, length) runs; None if any chunk is not hot."""
    cached = smu._extents
    if cached is not None and cached[0] == store.epoch:
        return cached[1]
    runs: list[tuple[Segment, int, int]] = []
    result: tuple[tuple[Segment, int, int], ...] | None
    for e in smu.chunks:
        if e.tier is not Tier.HOT:
            result = None
            break
        seg = e.loc
        if runs:
            pseg, poff, plen = runs[-1]
            if pseg is seg and poff + plen == e.offset:
                runs[-1] = (pseg, poff, plen + e.size)
                continue
        runs.append((seg, e.offset, e.size))  # type: ignore[arg-type]
    else:
        result = tuple(runs)
    smu._extents = (store.epoch, result)
    return result


def pieces(store: Store, smu: SMU) -> list[memoryview]:
    extents = extents_of(store, smu)
    if extents is not None:
        return [seg.view(off, n) for seg, off, n in extents]
    return runs(store, smu.chunks)


def runs(store: Store, entries: Iterable[ChunkEntry]) -> list[memoryview]:
    """Views of ``entries`` in order, one per run of chunks adjacent in one container."""
    out: list[memoryview] = []
    loc: Segment | WarmGroup | ColdGroup | None = None
    start = end = 0
    for e in entries:
        if e.loc is loc and e.offset == end:
            end += e.size
            continue
        if loc is not None:
            out.append(view(store, loc, start, end - start))
        loc, start, end = e.loc, e.offset, e.offset + e.size
    if loc is not None:
        out.append(view(store, loc, start, end - start))
    return out


def view(
    store: Store, loc: Segment | WarmGroup | ColdGroup, offset: int, length: int
) -> memoryview:
    if isinstance(loc, Segment):
        return loc.view(offset, length)
    if isinstance(loc, WarmGroup):
        return store.warm.view(loc, offset, length)
    assert store.cold is not None
    return store.cold.view(loc, offset, length)


def node_bytes(store: Store, node: MessageNode) -> memoryview:
    chunks = node.chunks
    if len(chunks) == 1:
        return store._load(chunks[0])
    return memoryview(b"".join(runs(store, chunks)))


def compact(store: Store, max_live_ratio: float) -> int:
    """:meth:`Store.compact`: re-place the live chunks of sparse segments, in order."""
    hot = store.hot
    sparse = {
        id(seg)
        for seg in hot
        if not hot.is_open(seg) and seg.used and seg.live_bytes <= max_live_ratio * seg.used
    }
    if not sparse:
        return 0
    movers = [e for e in store.chunks.values() if id(e.loc) in sparse]
    movers.sort(key=lambda e: (id(e.loc), e.offset))
    reclaimed = sum(seg.used for seg in hot if id(seg) in sparse)
    pools = (("shared", SMUType.SYSTEM_PROMPT), ("private", SMUType.BLOB), ("far", SMUType.BLOB))
    for pool, kind in pools:
        group = [e for e in movers if e.loc.pool == pool]  # type: ignore[union-attr]
        if not group:
            continue
        olds = [e.loc for e in group]
        hot.put(group, [hot.load(e) for e in group], kind, far=pool == "far")
        for e, old in zip(group, olds, strict=True):
            hot.forget(old, e.size)  # type: ignore[arg-type]
    for seg in [seg for seg in hot if id(seg) in sparse]:
        hot.retire_if_empty(seg)  # a segment with no live chunk left (all holes)
    store.epoch += 1
    return reclaimed - sum(e.size for e in movers)
