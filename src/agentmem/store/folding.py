"""Folded histories: an idle conversation's messages as packed arrays, not one object each.

Why. A message is a :class:`~agentmem.store.records.MessageNode` (80 bytes), its chunk id
(a 65-byte ``bytes``) and an entry in the chunk index (~50 bytes at a million entries): ~200
bytes of index a message, whatever tier its bytes are in. 100 seed-profile agents hold 1.5
million messages: ~400 MiB of index for 371 MiB of compressed conversation. Once the age rules
have taken a conversation down and nobody uses it, nothing looks its messages up one by one, so
its history after its last fork point is *folded* into arrays: per message 32 bytes of id and
4 each of size, place and container (~44 bytes), and per chunk that only this history holds
(a message repeated in it, the pieces of a long message) 32 bytes of id and 16 of size, place,
container and count. The first use of the handle (a read, an append, a fork, a promotion,
``check``) unfolds it back into nodes and entries exactly as they were; the maintenance pass
folds it again once the age rules have taken it down again.

What it buys, measured on 20 seed-profile agents (300,890 messages, all folded once idle): the
live index falls from ~81 MB to ~22 MB (``metadata_bytes``), but the daemon's PSS at steady
state does not fall with it. The freed objects sit in the heap between objects that outlive
them (entries that other histories share, their ids, interned sizes), so their pages stay
resident (``malloc_info``: 89 MB free in 70,000 holes): room for the daemon's next
allocations (agents that come back, new messages), not for the rest of the machine. Where a
history's objects are not interleaved with survivors (10 agents loading alone, then idle),
the pages do go back: -22 MiB of PSS under pymalloc, -41 MiB under the C library's malloc.
Every object the run holds alone goes, entries included: keeping them left nothing at all.

What may be folded: the messages from the tip back to the last node with more than one claim
(a fork point: it and its history stay nodes; the first folded message's claim on it stays
counted). Every message's own chunk must be out of the hot tier (warm or cold: a hot segment's
compaction finds its chunks through their entries). A chunk that content outside the run holds
too, or that is in a segment, stays an entry object, held by the run as before
(``Folded.shared``), and so do the other chunks of the messages that hold it.

The price: while folded, the run's chunks are not in the chunk index, so the same bytes
allocated elsewhere meanwhile are stored again; on unfold the run gives its copy up and uses
the other one (one copy again). Messages another conversation appended after the same parent
meanwhile are the same nodes (equal ids): the unfolded history continues through them.
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import TYPE_CHECKING, Final

from agentmem.ids import ChunkId
from agentmem.store import conversations
from agentmem.store.cold import ColdGroup
from agentmem.store.records import (
    _INDEXES,
    MARK_STRIDE,
    SHARED_INDEXES,
    ChunkEntry,
    ConversationRef,
    MessageNode,
    WarmGroup,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from agentmem.store.store import Store

#: Conversations shorter than this are not folded: the arrays' fixed cost (~500 bytes) and an
#: unfold on next use are not worth the ~160 bytes a message saved.
FOLD_MIN_MESSAGES: Final = 64
#: ``Folded.where`` of a message that is not its own chunk: its chunks are the run's
#: (``Folded.seq``) or held by other content too (``Folded.shared``).
LOCAL_PLACE: Final = 0xFFFFFFFE
SHARED_PLACE: Final = 0xFFFFFFFF
_ID = 32  # bytes of a chunk id

Container = WarmGroup | ColdGroup


class Folded:
    """A conversation ref's folded history (see the module docstring), oldest message first.

    Owns no bytes: its containers' ``live`` counts and its shared entries' ``refs`` still
    count what it holds. Not thread-safe (the store's loop only).
    """

    __slots__ = (
        "ats",
        "base",
        "c_ats",
        "c_ids",
        "c_refs",
        "c_sizes",
        "c_where",
        "containers",
        "ids",
        "seq",
        "shared",
        "sizes",
        "store",
        "where",
    )

    def __init__(self, store: Store, base: MessageNode | None) -> None:
        self.store = store
        #: The fork point the first message continues (holding a claim on it), or None.
        self.base = base
        #: The messages' content ids, 32 bytes each.
        self.ids = b""
        #: Plain bytes of each message.
        self.sizes = array("I")
        #: Each message's container index (its own chunk), LOCAL_PLACE or SHARED_PLACE.
        self.where = array("I")
        #: Own chunk: its index in its container's ``starts``; LOCAL_PLACE: where its chunk
        #: list starts in ``seq``; SHARED_PLACE: 0.
        self.ats = array("I")
        #: Chunk lists of LOCAL_PLACE messages: a count, then that many run chunk indexes.
        self.seq = array("I")
        #: The run's chunks (held by its messages only): ids, sizes, container indexes,
        #: places in their containers, and occurrences in the run (their ``refs``).
        self.c_ids = b""
        self.c_sizes = array("I")
        self.c_where = array("I")
        self.c_ats = array("I")
        self.c_refs = array("I")
        #: The distinct warm/cold groups holding the run's chunks.
        self.containers: list[Container] = []
        #: Message index -> what its node referenced (entries other content holds too).
        self.shared: dict[int, ChunkEntry | tuple[ChunkEntry, ...]] = {}

    def __len__(self) -> int:
        return len(self.sizes)

    def nbytes(self) -> int:
        """Bytes of the arrays and lists (what the folded index costs)."""
        arrays = (self.sizes, self.where, self.ats, self.seq)
        chunk_arrays = (self.c_sizes, self.c_where, self.c_ats, self.c_refs)
        return (
            len(self.ids)
            + len(self.c_ids)
            + sum(4 * len(a) for a in arrays)
            + sum(4 * len(a) for a in chunk_arrays)
            + 8 * len(self.containers)
            + 100 * len(self.shared)
        )

    def unfold(self, ref: ConversationRef) -> None:
        """Rebuild ``ref``'s nodes (see :func:`unfold`)."""
        unfold(self.store, ref)

    def shared_entries(self) -> Iterator[ChunkEntry]:
        """The entries other content holds too, as the run's messages hold them."""
        for loc in self.shared.values():
            if loc.__class__ is tuple:
                yield from loc
            else:
                yield loc  # type: ignore[misc]

    def own_bytes(self) -> int:
        """Plain bytes of the chunks only the run holds (its messages' own, and its chunks)."""
        own = sum(s for s, w in zip(self.sizes, self.where, strict=True) if w < LOCAL_PLACE)
        return own + sum(self.c_sizes)

    def tier_bytes(self, tier: object) -> int:
        """Plain bytes of the chunks only the run holds whose container is in ``tier``, plus
        those of shared entries held once (``refs == 1``) there: what demoting it would move."""
        counts = [0] * len(self.containers)
        for s, w in zip(self.sizes, self.where, strict=True):
            if w < LOCAL_PLACE:
                counts[w] += s
        for s, w in zip(self.c_sizes, self.c_where, strict=True):
            counts[w] += s
        total = sum(n for c, n in zip(self.containers, counts, strict=True) if c.tier is tier)
        for e in self.shared_entries():
            if e.refs == 1 and e.loc is not None and e.loc.tier is tier:
                total += e.size
        return total


def _cold_enough(loc: object) -> bool:
    return loc.__class__ is WarmGroup or loc.__class__ is ColdGroup


def fold(store: Store, ref: ConversationRef, min_messages: int = FOLD_MIN_MESSAGES) -> int:
    """Fold ``ref``'s history after its last fork point if it may be (module docstring) and
    is at least ``min_messages`` long; returns the messages folded (0: left as it is)."""
    if ref.folded is not None or ref.pinned:
        return 0
    run: list[MessageNode] = []
    held: Counter[int] = Counter()  # id(entry) -> occurrences in the run's referencing nodes
    node = ref._tip
    while node is not None and node.refs == 1:
        loc: object = node.loc
        if not _cold_enough(loc):
            if loc.__class__ is not ChunkEntry and loc.__class__ is not tuple:
                return 0  # its own chunk is in a segment (hot, or far)
            for e in node.chunks:
                held[id(e)] += 1
        run.append(node)
        node = node.parent
    if not run or len(run) < min_messages:
        return 0
    run.reverse()
    f = Folded(store, node)
    pins = store.pins
    index: dict[int, int] = {}  # id(container) -> its index in f.containers
    local: dict[int, int] = {}  # id(entry) -> its index in the run's chunks
    ids: list[bytes] = []
    c_ids: list[bytes] = []
    sizes, where, ats, seq, containers = f.sizes, f.where, f.ats, f.seq, f.containers
    chunks, nodes = store.chunks, store.nodes

    # A chunk is the run's when all its occurrences are the run's, and every message holding
    # it holds only such chunks (one that holds an outside chunk too keeps its entry objects,
    # and with them these): a fixpoint, short in practice.
    referencing = [n for n in run if not _cold_enough(n.loc)]
    # A chunk in a segment stays an entry too: compaction finds segments' chunks by entry.
    outside = {
        id(e)
        for n in referencing
        for e in n.chunks
        if e.refs != held[id(e)] or e.id in pins or not _cold_enough(e.loc)
    }
    changed = bool(outside)
    while changed:
        changed = False
        for n in referencing:
            es = n.chunks
            if any(id(e) in outside for e in es):
                for e in es:
                    if id(e) not in outside:
                        outside.add(id(e))
                        changed = True

    def container(c: object) -> int:
        k = index.get(id(c))
        if k is None:
            k = index[id(c)] = len(containers)
            containers.append(c)  # type: ignore[arg-type]
        return k

    for i, n in enumerate(run):
        ids.append(n.id)
        sizes.append(n.size)
        loc = n.loc
        if _cold_enough(loc):  # its own chunk
            where.append(container(loc))
            ats.append(n.at)
            del chunks[n.id]
            continue
        del nodes[(n.parent, n.id)]
        entries = n.chunks
        if any(id(e) in outside for e in entries):
            where.append(SHARED_PLACE)  # other content holds some of them too
            ats.append(0)
            f.shared[i] = loc  # type: ignore[assignment]
            continue
        where.append(LOCAL_PLACE)
        ats.append(len(seq))
        seq.append(len(entries))
        for e in entries:
            j = local.get(id(e))
            if j is None:
                j = local[id(e)] = len(f.c_sizes)
                c_ids.append(e.id)
                f.c_sizes.append(e.size)
                f.c_where.append(container(e.loc))
                f.c_ats.append(e.at)
                f.c_refs.append(e.refs)
                del chunks[e.id]
            seq.append(j)
    f.ids = b"".join(ids)
    f.c_ids = b"".join(c_ids)
    ref.folded = f
    ref._tip = None
    ref._marks = []
    store.folded_messages += len(run)
    store.folded_chunks += sum(1 for w in where if w < LOCAL_PLACE) + len(f.c_sizes)
    return len(run)


def _chunk_count(f: Folded) -> int:
    return sum(1 for w in f.where if w < LOCAL_PLACE) + len(f.c_sizes)


def unfold(store: Store, ref: ConversationRef) -> None:
    """Give ``ref`` its nodes and entries back, as they were before :func:`fold`. What was
    stored again while it was folded is one copy again: a chunk stored elsewhere meanwhile is
    used, and the run's copy dropped; messages another conversation appended after the same
    parent meanwhile are the same nodes, and the history continues through them."""
    f = ref.folded
    assert f is not None
    ref.folded = None
    # Unfolded without a use (``check``, a move to cold): the next pass may fold it again.
    store.fold_tried.pop(ref.handle, None)
    store.folded_messages -= len(f.sizes)
    store.folded_chunks -= _chunk_count(f)
    parent = f.base
    marks: list[MessageNode] = []
    ids, sizes, where, ats, seq, containers = f.ids, f.sizes, f.where, f.ats, f.seq, f.containers
    chunks, nodes, intern = store.chunks, store.nodes, store.intern_size
    made: list[ChunkEntry | None] = [None] * len(f.c_sizes)

    def run_chunk(j: int) -> ChunkEntry:
        e = made[j]
        if e is None:
            cid = ChunkId(f.c_ids[j * _ID : (j + 1) * _ID])
            size = intern(f.c_sizes[j])
            there = containers[f.c_where[j]]
            existing = chunks.get(cid)
            if existing is None:
                e = ChunkEntry(cid, size)
                e.loc = there
                at = f.c_ats[j]
                e.at = _INDEXES[at] if at < SHARED_INDEXES else at
                e.refs = f.c_refs[j]
                chunks[cid] = e
            else:  # stored again meanwhile: one copy again
                e = (
                    conversations.detach(store, existing)
                    if existing.__class__ is MessageNode
                    else existing
                )
                e.refs += f.c_refs[j]
                store._forget(there, size)
            made[j] = e
        return e

    merging = True
    for i in range(len(sizes)):
        cid = ChunkId(ids[i * _ID : (i + 1) * _ID])
        size = intern(sizes[i])
        w = where[i]
        if w == LOCAL_PLACE:
            start = ats[i]
            entries = tuple(run_chunk(j) for j in seq[start + 1 : start + 1 + seq[start]])
            loc: object = entries[0] if len(entries) == 1 else entries
        elif w == SHARED_PLACE:
            loc = f.shared[i]
        else:
            loc = containers[w]
        if merging:
            # Another conversation may have appended the same messages to the same parent
            # meanwhile (the fork point, or the root): those nodes are these messages (equal
            # ids), so the history continues through them and drops its own copies.
            same = conversations.find(store, parent, cid)
            if same is not None:
                if same.owns_chunk:
                    conversations.detach(store, same)  # a second claim
                same.refs += 1  # the claim of what follows it here (or of the ref)
                if parent is not None:
                    parent.refs -= 1  # ours on it: ``same`` holds one already
                if w < LOCAL_PLACE:
                    store._forget(loc, size)  # type: ignore[arg-type]
                else:
                    store.unref_chunks(loc if loc.__class__ is tuple else (loc,))
                store.message_count -= 1
                if (i + 1) % MARK_STRIDE == 0:
                    marks.append(same)
                parent = same
                continue
            merging = False
        node = MessageNode(cid, size, parent)
        node.refs = 1
        if w < LOCAL_PLACE:
            existing = chunks.get(cid)
            if existing is None:
                at = ats[i]
                node.loc = loc  # type: ignore[assignment]
                node.at = _INDEXES[at] if at < SHARED_INDEXES else at
                chunks[cid] = node
            else:  # stored again meanwhile: one copy again
                entry = (
                    conversations.detach(store, existing)
                    if existing.__class__ is MessageNode
                    else existing
                )
                entry.refs += 1
                node.loc = entry  # type: ignore[assignment]
                nodes[(parent, cid)] = node
                store._forget(loc, size)  # type: ignore[arg-type]
        else:
            node.loc = loc  # type: ignore[assignment]
            nodes[(parent, cid)] = node
        if (i + 1) % MARK_STRIDE == 0:
            marks.append(node)
        parent = node
    ref._tip = parent
    ref._marks = marks


def release(store: Store, ref: ConversationRef) -> None:
    """Free a folded history without building its nodes (the handle is being released)."""
    f = ref.folded
    assert f is not None
    ref.folded = None
    forget, containers = store._forget, f.containers
    for s, w in zip(f.sizes, f.where, strict=True):
        if w < LOCAL_PLACE:
            forget(containers[w], s)
    for s, w in zip(f.c_sizes, f.c_where, strict=True):
        forget(containers[w], s)
    for loc in f.shared.values():
        store.unref_chunks(loc if loc.__class__ is tuple else (loc,))  # type: ignore[arg-type]
    store.message_count -= len(f.sizes)
    store.folded_messages -= len(f.sizes)
    store.folded_chunks -= _chunk_count(f)
    conversations.unref_node(store, f.base)  # the first message's claim on the fork point


def fold_idle(store: Store) -> int:
    """Fold the conversations the age rules took down and nobody used since; returns the
    messages folded. O(handles taken down) when there is nothing new to fold: a conversation
    that could not be folded is not looked at again until it is used."""
    done = 0
    tried = store.fold_tried
    for h, touched in store.aged.items():
        ref = store.refs.get(h)
        if ref is None or ref.__class__ is not ConversationRef or ref.touched != touched:
            continue
        if ref.folded is not None or tried.get(h) == touched:
            continue
        tried[h] = touched
        done += fold(store, ref)
    store.folded_since_rebuild += done
    if store.folded_since_rebuild > len(store.chunks):
        # A dict never shrinks: once more entries left it than it holds, a copy sized to fit
        # gives the table back (1.5 million folded messages left ~100 MB of it otherwise).
        store.chunks = dict(store.chunks)
        store.nodes = dict(store.nodes)
        store.folded_since_rebuild = 0
    return done
