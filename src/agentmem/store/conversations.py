"""Conversations: append-only chains of messages with prefix-chained ids.

A message's id is BLAKE3(parent id || content id), so two conversations that start with the
same messages share the same nodes, and a fork costs one ref, not a copy. Equal ids mean equal
parents and equal content, so the store finds a node by (parent node, content id) and keeps no
id: a node that is its own chunk's entry is found through the chunk index (its ``parent``
must match), any other through ``Store.nodes`` (``records.MessageNode`` has both forms).

A conversation ref holds only its tip (one claim on the tip node); every node holds one claim
on its parent. Freeing walks up the chain iteratively (histories of thousands of messages must
not recurse). A ref reaches message ``i`` from the nearest mark (``records.MARK_STRIDE``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentmem import constants
from agentmem.errors import DiskFull, TooLarge
from agentmem.hashing import chunk_id, message_id
from agentmem.ids import ChunkId, Handle, MessageId
from agentmem.states import SMUType, Tier
from agentmem.store import tiering
from agentmem.store.records import (
    MARK_STRIDE,
    Agent,
    ChunkEntry,
    ConversationRef,
    MessageNode,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from agentmem.store.store import Buffer, Store

_CONVERSATION = SMUType.CONVERSATION
#: Messages up to this size are one chunk (``constants.MESSAGE_WHOLE_MAX``).
_WHOLE_MAX = constants.MESSAGE_WHOLE_MAX


def append(
    store: Store, ref: ConversationRef, buf: Buffer, *, journal_later: bool = False
) -> MessageNode:
    """Extend ``ref`` by one message; reuses an existing node with the same id.

    ``journal_later``: the message's record is queued (``Journal.add``) for the caller's
    ``Journal.flush``, which takes the appends back with :func:`undo_appends` if it fails."""
    size = len(buf)
    if size > constants.MAX_MESSAGE_BYTES:
        raise TooLarge(f"a message of {size} bytes exceeds {constants.MAX_MESSAGE_BYTES}")
    store._check_quota(ref.agent, size)
    journal = store.journal
    parent = ref.tip
    cid = chunk_id(buf)
    node = find(store, parent, cid)
    if node is None:
        # In the conversation's own segments once it is worth a mapping (``store.hot``).
        owner = ref.handle if ref.size >= store.hot.own_after_bytes else 0
        node = _new_node(store, parent, cid, buf, ref.agent, owner=owner)
        # The ref's claim on its old tip becomes the new node's claim on its parent: the
        # parent's count does not change.
        node.refs = 1
    else:
        if not store._claimable:
            # A history another conversation already has (a shared task template): in use
            # again.
            demoted = [e for e in node.chunks if e.loc.tier is not Tier.HOT]
            if demoted:
                store._revive(demoted, _CONVERSATION, ref.agent)
        if node.owns_chunk:
            detach(store, node)  # a second claim
        node.refs += 1  # the ref's claim on its new tip
        if parent is not None:
            unref_node(store, parent)  # the ref no longer has its old tip
    _advance(ref, node)
    agent = ref.agent
    agent.logical_bytes += size
    agent.by_type[_CONVERSATION] += size
    if journal is not None:
        if journal_later:
            journal.add(ref.handle, cid, buf)
        else:
            try:
                journal.append(ref.handle, cid, buf)
            except DiskFull:
                _undo_append(store, ref, node, parent)
                raise
    budget = store.config.hot_budget_bytes
    if budget and store.hot.live_bytes > budget:  # the room made was not enough
        tiering.enforce_budget(store)
    return node


def find(store: Store, parent: MessageNode | None, cid: ChunkId) -> MessageNode | None:
    """The live node with parent ``parent`` and content id ``cid``, if any."""
    hit = store.chunks.get(cid)
    if hit is not None and hit.__class__ is MessageNode and hit.parent is parent:
        return hit
    return store.nodes.get((parent, cid))


def _new_node(
    store: Store,
    parent: MessageNode | None,
    cid: ChunkId,
    buf: Buffer,
    agent: Agent,
    *,
    owner: int = 0,
) -> MessageNode:
    size = len(buf)
    node = MessageNode(cid, store.intern_size(size), parent)
    if size <= _WHOLE_MAX and cid not in store.chunks:
        # Content seen nowhere else: its own entry.
        store.place_new(node, buf, _CONVERSATION, owner)
    else:
        entries = store.ingest_chunks(
            buf, _CONVERSATION, cid, agent=agent, owner=owner, whole_max=_WHOLE_MAX
        )
        if len(entries) == 1:
            node.loc = entries[0]  # type: ignore[assignment]
            node.id = entries[0].id  # one id object for the entry and the node
        else:
            node.loc = entries  # type: ignore[assignment]
        store.nodes[(parent, node.id)] = node
    store.message_count += 1
    return node


def detach(store: Store, node: MessageNode) -> ChunkEntry:
    """Give the chunk of a node that is its own entry an entry of its own (same place, same
    bytes), and index the node as a referencing one; returns the entry (held once, by the
    node). Called before a second claim on the node or a second occurrence of its chunk."""
    entry = ChunkEntry(node.id, node.size)
    entry.loc = node.loc
    entry.at = node.at
    entry.refs = 1
    store.chunks[node.id] = entry
    node.loc = entry  # type: ignore[assignment]
    store.nodes[(node.parent, node.id)] = node
    if store.warm.clean:
        store.warm.hand_over_clean(node, entry)
    return entry


def _advance(ref: ConversationRef, node: MessageNode) -> None:
    ref.tip = node
    ref.length += 1
    if ref.length % MARK_STRIDE == 0:
        ref.marks.append(node)
    ref.size += node.size


def undo_appends(
    store: Store, ref: ConversationRef, appended: list[tuple[MessageNode, MessageNode | None]]
) -> None:
    """Take back ``appended`` ((node, the tip before it), in the order they were made), newest
    first: their journal records could not be written."""
    for node, parent in reversed(appended):
        _undo_append(store, ref, node, parent)


def _undo_append(
    store: Store, ref: ConversationRef, node: MessageNode, parent: MessageNode | None
) -> None:
    """Take back the append that made ``node`` the tip of ``ref`` (its journal record could
    not be written): the ref's claim goes back to ``parent``; ``node`` is freed if new."""
    if ref.length % MARK_STRIDE == 0:
        ref.marks.pop()
    ref.length -= 1
    ref.tip = parent
    ref.size -= node.size
    agent = ref.agent
    agent.logical_bytes -= node.size
    agent.by_type[_CONVERSATION] -= node.size
    if parent is not None:
        # Back to the ref; if the node goes, its claim on the parent goes with it (so a
        # parent that is its own entry is at 2 only between these two lines).
        parent.refs += 1
    unref_node(store, node)


def fork(store: Store, ref: ConversationRef, agent: Agent, handle: Handle | None = None) -> Handle:
    """A new conversation ref for ``agent`` at the same tip (``handle``: a restored one)."""
    h = store.new_handle() if handle is None else handle
    if store.journal is not None:
        store.journal.fork(h, ref.handle, agent.name)  # DiskFull: nothing was created
    tip = ref.tip
    if tip is not None:
        if tip.owns_chunk:
            detach(store, tip)  # a second claim
        tip.refs += 1
    new = store.refs[h] = ConversationRef(h, agent)
    new.tip = tip
    new.length = ref.length
    new.marks = list(ref.marks)
    new.size = ref.size
    new.touched = store.clock()
    agent.handles += 1
    store.handles_by_type[_CONVERSATION] += 1
    agent.logical_bytes += ref.size
    agent.by_type[_CONVERSATION] += ref.size
    return h


def unref_node(store: Store, node: MessageNode | None) -> None:
    """Drop one claim on ``node``; free it, and up the chain, while counts reach zero."""
    while node is not None:
        node.refs -= 1
        if node.refs:
            return
        if node.owns_chunk:
            del store.chunks[node.id]
            store.freed(node)
        else:
            del store.nodes[(node.parent, node.id)]
            store.unref_chunks(node.chunks)
        store.message_count -= 1
        node = node.parent


def nodes(ref: ConversationRef, start: int = 0, stop: int | None = None) -> list[MessageNode]:
    """Messages ``start:stop`` of ``ref`` (slice semantics), oldest first: O(stop - start +
    MARK_STRIDE) from the nearest mark."""
    start, stop, _ = slice(start, stop).indices(ref.length)
    if start >= stop:
        return []
    node = node_at(ref, stop - 1)
    out: list[MessageNode] = []
    for _ in range(stop - start):
        out.append(node)
        node = node.parent  # type: ignore[assignment]
    out.reverse()
    return out


def node_at(ref: ConversationRef, i: int) -> MessageNode:
    """Message ``i`` (0 <= i < length) of ``ref``."""
    k = i // MARK_STRIDE
    marks = ref.marks
    if k < len(marks):
        node, at = marks[k], (k + 1) * MARK_STRIDE - 1
    else:
        node, at = ref.tip, ref.length - 1  # type: ignore[assignment]
    while at > i:
        node = node.parent  # type: ignore[assignment]
        at -= 1
    return node


def newest_first(ref: ConversationRef) -> Iterator[MessageNode]:
    """The ref's messages from the tip back to the root (no list built)."""
    node = ref.tip
    while node is not None:
        yield node
        node = node.parent


def message_id_of(node: MessageNode) -> MessageId:
    """The node's message id (``hashing.message_id`` chained from the root): O(depth)."""
    chain: list[MessageNode] = []
    n: MessageNode | None = node
    while n is not None:
        chain.append(n)
        n = n.parent
    mid: MessageId | None = None
    for n in reversed(chain):
        mid = message_id(mid, n.id)
    assert mid is not None
    return mid
