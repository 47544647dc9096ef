"""Where an SMU's bytes lie, and views of them: extents of hot segments, runs of chunks.

Reads are zero-copy where the layout allows: chunks adjacent in one container are merged into
one view, and an SMU whose chunks are all hot and contiguous is a single extent. Extents are
cached per SMU, keyed by the store's layout epoch (bumped whenever any chunk moves). A
conversation's messages are extents of its own handle's segments where they lie there
(:func:`message_extents`), copies elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING

from agentmem.states import SMUType, Tier
from agentmem.store.records import SMU, ChunkEntry, MessageNode, WarmGroup
from agentmem.store.segments import Segment

#: (segment, offset, length): bytes of a hot segment.
Extent = tuple[Segment, int, int]

if TYPE_CHECKING:
    from agentmem.store.cold import ColdGroup
    from agentmem.store.store import Store


@dataclasses.dataclass(frozen=True, slots=True)
class MessageExtents:
    """Messages of a conversation as extents its handle may map, and the bytes of the rest.

    The pieces, each extent read as its bytes, concatenate to the messages in order;
    ``sizes`` says where each message ends. Buffer ownership: the memoryviews are read-only
    and stay valid as long as the caller keeps them (as ``Store.messages``'s); an extent's
    bytes stay as they are while its segment is live (appends only add after ``used``).
    """

    sizes: list[int]
    """Plain bytes of each message, in order."""
    pieces: list[Extent | memoryview]
    """In order: an extent of a segment the handle owns (bytes of consecutive non-empty
    messages there coalesced into one; a message may span two), or the whole bytes of one
    message that does not lie entirely in such segments (not hot, in another handle's
    segment, in a private or shared one) or is empty."""


def not_hot(nodes: Iterable[MessageNode]) -> list[ChunkEntry]:
    """The chunks of ``nodes`` that are not in a hot segment, in order."""
    out: list[ChunkEntry] = []
    for node in nodes:
        if node.loc.__class__ is Segment:  # its own chunk's entry, hot: the common case
            continue
        out.extend(e for e in node.chunks if e.loc.__class__ is not Segment)
    return out


def message_extents(store: Store, owner: int, nodes: Sequence[MessageNode]) -> MessageExtents:
    """:meth:`Store.message_extents` for ``nodes`` (promoted, or to be served decoded), read
    by conversation handle ``owner``. O(chunks of ``nodes``): 1.7 ms for 15,000 messages."""
    sizes: list[int] = []
    pieces: list[Extent | memoryview] = []
    seg: Segment | None = None  # the run being coalesced: seg[off:end]
    off = end = 0
    for node in nodes:
        size = node.size
        sizes.append(size)
        loc: object = node.loc
        if not size:
            pass  # an empty message is its own (empty) piece: no extent ends on one unseen
        elif loc.__class__ is Segment:  # its own chunk's entry (records.MessageNode)
            # Only an owned segment has an owner; a released owner's have none.
            if loc.owner == owner:
                at = loc.starts[node.at]
                if loc is seg and at == end:
                    end += size
                    continue
                if seg is not None:
                    pieces.append((seg, off, end - off))
                seg, off, end = loc, at, at + size
                continue
        else:
            chunks = node.chunks
            if all(e.loc.__class__ is Segment and e.loc.owner == owner for e in chunks):
                for e in chunks:
                    eloc = e.loc
                    at = eloc.starts[e.at]
                    if eloc is seg and at == end:
                        end += e.size
                        continue
                    if seg is not None:
                        pieces.append((seg, off, end - off))
                    seg, off, end = eloc, at, at + e.size  # type: ignore[assignment]
                continue
        if seg is not None:
            pieces.append((seg, off, end - off))
            seg = None
        pieces.append(node_bytes(store, node))
    if seg is not None:
        pieces.append((seg, off, end - off))
    return MessageExtents(sizes, pieces)


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


#: Index entries a compaction's scan looks at per step: ~3 ms here (the whole index of 1.35
#: million chunks, at once, held the daemon 100-135 ms in each compaction of a 100-agent
#: seed swarm).
SCAN_STEP = 32_768

_KINDS = {"shared": SMUType.SYSTEM_PROMPT, "private": SMUType.BLOB, "far": SMUType.BLOB}


def compaction(store: Store, max_live_ratio: float) -> Generator[None, None, int] | None:
    """:meth:`Store.compact_steps`: re-place the live chunks of sparse segments, in order,
    in steps; None when no segment is sparse."""
    hot = store.hot
    sparse = {
        id(seg): seg
        for seg in hot
        if not hot.is_open(seg) and seg.used and seg.live_bytes <= max_live_ratio * seg.used
    }
    if not sparse:
        return None
    return _compaction(store, sparse)


def _compaction(store: Store, sparse: dict[int, Segment]) -> Generator[None, None, int]:
    """The steps: the index scanned SCAN_STEP entries at a time for the chunks of ``sparse``
    (a segment appears there once: the dict keeps it, and its id, alive), then one step per
    pool and owner, each moving that group's chunks, in their old order, into one new segment
    of the same owner sized to fit (never another handle's, nor a private one).

    What others do between steps is checked before anything moves: a chunk freed, moved
    (demoted, or re-placed) or whose segment changed hands since the scan stays as it is."""
    hot = store.hot
    chunks = store.chunks
    # The index as it is now, in one step (a list of references: ~15 ms for 1.35 million
    # entries here, where resuming an iterator of the index by position cost up to ~100 ms a
    # step, skipping what earlier steps had seen); then SCAN_STEP of them a step.
    index = list(chunks.values())
    found: list[ChunkEntry] = []
    for pos in range(0, len(index), SCAN_STEP):
        yield
        found.extend(e for e in index[pos : pos + SCAN_STEP] if id(e.loc) in sparse)
    del index
    used = {seg_key: seg.used for seg_key, seg in sparse.items()}

    def still(e: ChunkEntry) -> bool:
        return id(e.loc) in sparse and chunks.get(e.id) is e

    # Oldest segment first, then placement order: a conversation's messages stay in order.
    yield
    movers = sorted((e for e in found if still(e)), key=_placed)
    del found
    yield
    groups: dict[tuple[str, int], list[ChunkEntry]] = {}
    for e in movers:
        seg = e.loc
        groups.setdefault((seg.pool, seg.owner), []).append(e)  # type: ignore[union-attr]
    del movers
    moved = 0
    for (pool, owner), listed in groups.items():
        yield
        group = [e for e in listed if still(e) and _holder(e) == (pool, owner)]
        if not group:
            continue
        olds = [e.loc for e in group]
        payloads = [hot.load(e) for e in group]
        if owner:
            hot.put(group, payloads, SMUType.CONVERSATION, owner=owner, fresh=True)
        else:
            hot.put(group, payloads, _KINDS[pool], far=pool == "far")
        for e, old in zip(group, olds, strict=True):
            hot.forget(old, e.size)  # type: ignore[arg-type]
            moved += e.size
        store.epoch += 1
    for seg in sparse.values():
        hot.retire_if_empty(seg)  # a segment with no live chunk left (all holes)
    store.epoch += 1
    retired = sum(used[key] for key, seg in sparse.items() if seg.seg_id not in hot.segments)
    return max(0, retired - moved)


def _holder(e: ChunkEntry) -> tuple[str, int]:
    return e.loc.pool, e.loc.owner  # type: ignore[union-attr]


def _placed(e: ChunkEntry) -> tuple[int, int]:
    return e.loc.seg_id, e.offset  # type: ignore[union-attr]
