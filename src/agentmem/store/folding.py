"""Folded histories: an idle conversation's messages as packed arrays, not one object each.

Why. A message is a :class:`~agentmem.store.records.MessageNode` (80 bytes), its chunk id
(a 65-byte ``bytes``) and an entry in the chunk index (~50 bytes at a million entries): ~200
bytes of index a message, whatever tier its bytes are in. 100 seed-profile agents hold 1.5
million messages: ~400 MiB of index for 371 MiB of compressed conversation. Once the age rules
have taken a conversation down and nobody uses it, nothing looks its messages up one by one, so
its history after its last fork point is *folded*: 32 bytes of id, 4 of size, 4 of place and 4
of container index a message, in four arrays (~44 bytes). The first use of the handle (a read,
an append, a fork, a promotion, ``check``) unfolds it back into nodes, exactly as they were;
the maintenance pass folds it again once the age rules have taken it down again.

What may be folded: the messages from the tip back to the last node with more than one claim
(a fork point: it and its history stay nodes, the folded run holds the claim of its first
message on it). Every message's own chunk must be out of the hot tier (warm or cold: a hot
segment's compaction finds its chunks through their entries); a message made of chunks other
content holds too (a referencing node) keeps those entries in the run, counted as before.

The price: while folded, a message's own chunk is not in the chunk index, so the same bytes
allocated elsewhere meanwhile are stored again. On unfold such a message gives up its own copy
and refers to the new one (one copy again). Nothing else changes: refs, sizes, the journal and
what reads return are those of the nodes.
"""

from __future__ import annotations

from array import array
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
from agentmem.store.segments import Segment

if TYPE_CHECKING:
    from collections.abc import Iterator

    from agentmem.store.store import Store

#: Conversations shorter than this are not folded: the arrays' fixed cost (~400 bytes) and an
#: unfold on next use are not worth the ~160 bytes a message saved.
FOLD_MIN_MESSAGES: Final = 64
#: ``Folded.where`` for a message made of chunks other content holds (``Folded.shared``).
SHARED_PLACE: Final = 0xFFFFFFFF
_ID = 32  # bytes of a chunk id

Container = WarmGroup | ColdGroup


class Folded:
    """A conversation ref's folded history (see the module docstring), oldest message first.

    Owns no bytes: its containers' ``live`` counts and its shared entries' ``refs`` still
    count its messages. Not thread-safe (the store's loop only).
    """

    __slots__ = ("ats", "base", "containers", "ids", "shared", "sizes", "store", "where")

    def __init__(self, store: Store, base: MessageNode | None) -> None:
        self.store = store
        #: The fork point the first message continues (holding a claim on it), or None.
        self.base = base
        #: The messages' content ids, 32 bytes each.
        self.ids = b""
        #: Plain bytes of each message.
        self.sizes = array("I")
        #: Each message's index in ``containers`` (own chunk), or SHARED_PLACE.
        self.where = array("I")
        #: Each message's index in its container's ``starts`` (own chunk; else 0).
        self.ats = array("I")
        #: The distinct warm/cold groups holding the messages' own chunks.
        self.containers: list[Container] = []
        #: Message index -> what its node referenced: one entry or a tuple of them.
        self.shared: dict[int, ChunkEntry | tuple[ChunkEntry, ...]] = {}

    def __len__(self) -> int:
        return len(self.sizes)

    def nbytes(self) -> int:
        """Bytes of the arrays and lists (what the folded index costs)."""
        return (
            len(self.ids)
            + self.sizes.itemsize * len(self.sizes) * 3
            + 8 * len(self.containers)
            + 100 * len(self.shared)
        )

    def unfold(self, ref: ConversationRef) -> None:
        """Rebuild ``ref``'s nodes (see :func:`unfold`)."""
        unfold(self.store, ref)

    def shared_entries(self) -> Iterator[ChunkEntry]:
        """The entries the run's referencing messages hold, message by message."""
        for loc in self.shared.values():
            if loc.__class__ is tuple:
                yield from loc
            else:
                yield loc  # type: ignore[misc]

    def tier_bytes(self, tier: object) -> int:
        """Plain bytes of the run's own chunks whose container is in ``tier``, plus those of
        shared entries only the run holds (``refs == 1``) there: what demoting it would move."""
        counts = [0] * len(self.containers)
        sizes, where = self.sizes, self.where
        total = 0
        for i, w in enumerate(where):
            if w != SHARED_PLACE:
                counts[w] += sizes[i]
        for c, n in zip(self.containers, counts, strict=True):
            if c.tier is tier:
                total += n
        for e in self.shared_entries():
            if e.refs == 1 and e.loc is not None and e.loc.tier is tier:
                total += e.size
        return total


def fold(store: Store, ref: ConversationRef, min_messages: int = FOLD_MIN_MESSAGES) -> int:
    """Fold ``ref``'s history after its last fork point if it may be (module docstring) and
    is at least ``min_messages`` long; returns the messages folded (0: left as it is)."""
    if ref.folded is not None or ref.pinned:
        return 0
    run: list[MessageNode] = []
    node = ref._tip
    while node is not None and node.refs == 1:
        loc: object = node.loc
        cls = loc.__class__
        if cls is not WarmGroup and cls is not ColdGroup:
            if cls is not ChunkEntry and cls is not tuple:
                return 0  # its own chunk is hot (or far: in a segment all the same)
            for e in node.chunks:
                if e.refs == 1 and e.loc.__class__ is Segment:
                    return 0  # a chunk only it holds, still in a segment
        run.append(node)
        node = node.parent
    if not run or len(run) < min_messages:
        return 0
    run.reverse()
    f = Folded(store, node)
    index: dict[int, int] = {}
    ids = []
    sizes, where, ats, containers, shared = f.sizes, f.where, f.ats, f.containers, f.shared
    chunks, nodes = store.chunks, store.nodes
    for i, n in enumerate(run):
        ids.append(n.id)
        sizes.append(n.size)
        loc = n.loc
        if loc.__class__ is WarmGroup or loc.__class__ is ColdGroup:
            k = index.get(id(loc))
            if k is None:
                k = index[id(loc)] = len(containers)
                containers.append(loc)
            where.append(k)
            ats.append(n.at)
            del chunks[n.id]
        else:
            where.append(SHARED_PLACE)
            ats.append(0)
            shared[i] = loc  # type: ignore[assignment]
            del nodes[(n.parent, n.id)]
    f.ids = b"".join(ids)
    ref.folded = f
    ref._tip = None
    ref._marks = []
    store.folded_messages += len(run)
    store.folded_chunks += len(run) - len(shared)
    return len(run)


def unfold(store: Store, ref: ConversationRef) -> None:
    """Give ``ref`` its nodes back, as they were before :func:`fold`. What was stored again
    while it was folded is one copy again: a message whose chunk was stored elsewhere refers
    to that copy and drops its own; messages another conversation appended after the same
    parent meanwhile are the same nodes, and the history continues through them."""
    f = ref.folded
    assert f is not None
    ref.folded = None
    # Unfolded without a use (``check``, a move to cold): the next pass may fold it again.
    store.fold_tried.pop(ref.handle, None)
    parent = f.base
    marks: list[MessageNode] = []
    ids, sizes, where, ats, containers, shared = (
        f.ids,
        f.sizes,
        f.where,
        f.ats,
        f.containers,
        f.shared,
    )
    chunks, nodes, intern = store.chunks, store.nodes, store.intern_size
    merging = True
    for i in range(len(sizes)):
        cid = ChunkId(ids[i * _ID : (i + 1) * _ID])
        size = intern(sizes[i])
        w = where[i]
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
                if w == SHARED_PLACE:
                    loc = shared[i]
                    store.unref_chunks(loc if loc.__class__ is tuple else (loc,))  # type: ignore[arg-type]
                else:
                    store._forget(containers[w], size)
                store.message_count -= 1
                if (i + 1) % MARK_STRIDE == 0:
                    marks.append(same)
                parent = same
                continue
            merging = False
        node = MessageNode(cid, size, parent)
        node.refs = 1
        if w == SHARED_PLACE:
            node.loc = shared[i]  # type: ignore[assignment]
            nodes[(parent, cid)] = node
        else:
            container = containers[w]
            existing = chunks.get(cid)
            if existing is None:
                at = ats[i]
                node.loc = container
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
                store._forget(container, size)
        if (i + 1) % MARK_STRIDE == 0:
            marks.append(node)
        parent = node
    ref._tip = parent
    ref._marks = marks
    store.folded_messages -= len(sizes)
    store.folded_chunks -= len(sizes) - len(shared)


def release(store: Store, ref: ConversationRef) -> None:
    """Free a folded history without building its nodes (the handle is being released)."""
    f = ref.folded
    assert f is not None
    ref.folded = None
    sizes, where, containers = f.sizes, f.where, f.containers
    forget = store._forget
    for i, w in enumerate(where):
        if w != SHARED_PLACE:
            forget(containers[w], sizes[i])
    for loc in f.shared.values():
        store.unref_chunks(loc if loc.__class__ is tuple else (loc,))  # type: ignore[arg-type]
    store.message_count -= len(sizes)
    store.folded_messages -= len(sizes)
    store.folded_chunks -= len(sizes) - len(f.shared)
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
    return done
