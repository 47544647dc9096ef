"""Mark-sweep consistency check: recompute every refcount from the live refs, compare.

The store's counters are maintained incrementally on every operation; this recomputes them
from scratch (mark from the refs, sweep the indexes) and reports any drift, and optionally
re-hashes every chunk's bytes in every tier against its id.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from agentmem.errors import CorruptFrame
from agentmem.hashing import chunk_id
from agentmem.ids import short
from agentmem.store.conversations import newest_first
from agentmem.store.records import SMU, ChunkEntry, ConversationRef, MessageNode, Ref

if TYPE_CHECKING:
    from agentmem.store.store import Store


@dataclasses.dataclass(frozen=True, slots=True)
class CheckReport:
    """Result of :meth:`Store.check`."""

    chunks: int
    """Chunks in the index."""
    smus: int
    """Distinct live SMUs."""
    messages: int
    """Distinct live message nodes."""
    refs: int
    """Live handles."""
    verified: int
    """Chunks whose bytes were re-hashed and matched."""
    drift: tuple[str, ...]
    """Refcounts that differ from the recomputed ones, one line each."""
    orphans: tuple[str, ...]
    """Indexed chunks, SMUs or messages that no live ref reaches."""
    corrupt: tuple[str, ...]
    """Chunks whose stored bytes do not match their id."""

    @property
    def ok(self) -> bool:
        """True when nothing drifted, nothing is orphaned and nothing is corrupt."""
        return not (self.drift or self.orphans or self.corrupt)


@dataclasses.dataclass(slots=True)
class Counts:
    """Refcounts recomputed from the live refs, by object id: (object, count)."""

    smus: dict[int, tuple[SMU, int]]
    nodes: dict[int, tuple[MessageNode, int]]
    chunks: dict[int, tuple[ChunkEntry, int]]


def recount(store: Store) -> Counts:
    """Mark from the live refs and published names; count what each reached holds."""
    smu_refs: dict[int, int] = {}
    smus: dict[int, SMU] = {}
    node_refs: dict[int, int] = {}
    nodes: dict[int, MessageNode] = {}
    for ref in store.refs.values():
        if isinstance(ref, Ref):
            smus[id(ref.smu)] = ref.smu
            smu_refs[id(ref.smu)] = smu_refs.get(id(ref.smu), 0) + 1
        elif isinstance(ref, ConversationRef) and ref.tip is not None:
            tip = ref.tip
            node_refs[id(tip)] = node_refs.get(id(tip), 0) + 1
            for node in newest_first(ref):
                if id(node) in nodes:
                    break  # the rest of this history was marked through another ref
                nodes[id(node)] = node
    for smu in store.names.values():
        smus[id(smu)] = smu
        smu_refs[id(smu)] = smu_refs.get(id(smu), 0) + 1
    for node in list(nodes.values()):
        if node.parent is not None:
            node_refs[id(node.parent)] = node_refs.get(id(node.parent), 0) + 1
    chunks: dict[int, tuple[ChunkEntry, int]] = {}
    holders: list[SMU | MessageNode] = [*smus.values(), *nodes.values()]
    for holder in holders:
        for e in holder.chunks:
            hit = chunks.get(id(e))
            chunks[id(e)] = (e, 1 if hit is None else hit[1] + 1)
    return Counts(
        {k: (s, smu_refs[k]) for k, s in smus.items()},
        {k: (n, node_refs.get(k, 0)) for k, n in nodes.items()},
        chunks,
    )


def _indexed(store: Store, node: MessageNode) -> MessageNode | None:
    """What the store's indexes find at ``node``'s (parent, content id)."""
    hit = store.chunks.get(node.id) if node.owns_chunk else store.nodes.get((node.parent, node.id))
    return hit if hit.__class__ is MessageNode else None


def run_check(store: Store, *, verify_bytes: bool) -> CheckReport:
    counts = recount(store)
    smus = {k: s for k, (s, _) in counts.smus.items()}
    smu_refs = {k: n for k, (_, n) in counts.smus.items()}
    nodes = {k: s for k, (s, _) in counts.nodes.items()}
    node_refs = {k: n for k, (_, n) in counts.nodes.items()}
    chunk_refs = {k: n for k, (_, n) in counts.chunks.items()}
    holders: list[SMU | MessageNode] = [*smus.values(), *nodes.values()]

    drift: list[str] = []
    orphans: list[str] = []
    for k, smu in smus.items():
        if smu.refs != smu_refs[k]:
            drift.append(f"smu {short(smu.content_id)}: refs {smu.refs}, expected {smu_refs[k]}")
    for k, node in nodes.items():
        if node.refs != node_refs.get(k, 0):
            drift.append(
                f"message {short(node.id)}: refs {node.refs}, expected {node_refs.get(k, 0)}"
            )
        if _indexed(store, node) is not node:
            drift.append(f"message {short(node.id)} is live but not indexed")
        if node.owns_chunk and node_refs.get(k, 0) != 1:
            drift.append(
                f"message {short(node.id)} is its chunk's entry, with "
                f"{node_refs.get(k, 0)} claims instead of one"
            )
    if store.message_count != len(nodes):
        drift.append(f"messages: counted {store.message_count}, reachable {len(nodes)}")
    for (_parent, cid), node in store.nodes.items():
        if id(node) not in nodes:
            orphans.append(f"message {short(cid)} is indexed but unreachable")
    for cid, smu in store.smus.items():
        if id(smu) not in smus:
            orphans.append(f"smu {short(cid)} is indexed but unreachable")
    reachable_chunks: set[int] = set()
    for holder in holders:
        for e in holder.chunks:
            if id(e) in reachable_chunks:
                continue
            reachable_chunks.add(id(e))
            if e.__class__ is MessageNode:  # its refs are its claims, checked above
                if chunk_refs[id(e)] != 1:
                    drift.append(f"chunk {short(e.id)} of one message is held {chunk_refs[id(e)]}x")
            elif e.refs != chunk_refs[id(e)]:
                drift.append(f"chunk {short(e.id)}: refs {e.refs}, expected {chunk_refs[id(e)]}")
            if store.chunks.get(e.id) is not e:
                drift.append(f"chunk {short(e.id)} is live but not indexed")
    for cid, e in store.chunks.items():
        if id(e) not in reachable_chunks:
            orphans.append(f"chunk {short(cid)} is indexed but unreachable (refs {e.refs})")

    corrupt: list[str] = []
    verified = 0
    if verify_bytes:
        for cid, e in store.chunks.items():
            try:
                data = store._load(e)
            except CorruptFrame as exc:
                corrupt.append(f"chunk {short(cid)}: {exc}")
                continue
            if chunk_id(data) != cid:
                corrupt.append(f"chunk {short(cid)} ({e.tier.label}) does not match its id")
            else:
                verified += 1
    return CheckReport(
        chunks=len(store.chunks),
        smus=len(smus),
        messages=len(nodes),
        refs=len(store.refs),
        verified=verified,
        drift=tuple(drift),
        orphans=tuple(orphans),
        corrupt=tuple(corrupt),
    )
