"""Conversations: append-only chains of messages with prefix-chained ids.

A message node's id is BLAKE3(parent id || content id), so two conversations that start with
the same messages share the same nodes, and a fork costs one ref, not a copy. A conversation
ref holds only its tip (one ref on the tip node); every node holds one ref on its parent.
Freeing walks up the chain iteratively (histories of thousands of messages must not recurse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentmem import constants
from agentmem.errors import DiskFull, TooLarge
from agentmem.hashing import chunk_id, message_id
from agentmem.ids import Handle
from agentmem.states import SMUType, Tier
from agentmem.store import tiering
from agentmem.store.records import Agent, ConversationRef, MessageNode

if TYPE_CHECKING:
    from agentmem.store.store import Buffer, Store

_CONVERSATION = SMUType.CONVERSATION


def append(store: Store, ref: ConversationRef, buf: Buffer) -> MessageNode:
    """Extend ``ref`` by one message; reuses an existing node with the same id."""
    size = len(buf)
    if size > constants.MAX_MESSAGE_BYTES:
        raise TooLarge(f"a message of {size} bytes exceeds {constants.MAX_MESSAGE_BYTES}")
    store._check_quota(ref.agent, size)
    journal = store.journal
    path = ref.path
    parent = path[-1] if path else None
    cid = chunk_id(buf)
    mid = message_id(None if parent is None else parent.id, cid)
    node = store.nodes.get(mid)
    if node is None:
        # Sizes are interned (one int object per distinct size; see Store._sizes).
        node = MessageNode(
            mid,
            parent,
            store.ingest_chunks(buf, _CONVERSATION, cid, agent=ref.agent),
            store.intern_size(size),
        )
        store.nodes[mid] = node
        if parent is not None:
            parent.refs += 1  # the child's claim on its parent
    elif not store._claimable:
        # A history another conversation already has (a shared task template): in use again.
        demoted = [e for e in node.chunks if e.loc.tier is not Tier.HOT]
        if demoted:
            store._revive(demoted, _CONVERSATION, ref.agent)
    node.refs += 1  # the ref's claim on its new tip
    if parent is not None:
        unref_node(store, parent)  # the ref no longer has its old tip
    path.append(node)
    ref.size += size
    agent = ref.agent
    agent.logical_bytes += size
    agent.by_type[_CONVERSATION] += size
    if journal is not None:
        try:
            journal.append(ref.handle, cid, buf)
        except DiskFull:
            _undo_append(store, ref, node, parent)
            raise
    budget = store.config.hot_budget_bytes
    if budget and store.hot.live_bytes > budget:  # the room made was not enough
        tiering.enforce_budget(store)
    return node


def _undo_append(
    store: Store, ref: ConversationRef, node: MessageNode, parent: MessageNode | None
) -> None:
    """Take back the append that made ``node`` the tip of ``ref`` (its journal record could
    not be written): the ref's claim goes back to ``parent``; ``node`` is freed if new."""
    ref.path.pop()
    ref.size -= node.size
    agent = ref.agent
    agent.logical_bytes -= node.size
    agent.by_type[_CONVERSATION] -= node.size
    if parent is not None:
        parent.refs += 1
    unref_node(store, node)


def fork(store: Store, ref: ConversationRef, agent: Agent, handle: Handle | None = None) -> Handle:
    """A new conversation ref for ``agent`` at the same tip (``handle``: a restored one)."""
    h = store.new_handle() if handle is None else handle
    if store.journal is not None:
        store.journal.fork(h, ref.handle, agent.name)  # DiskFull: nothing was created
    path = list(ref.path)
    if path:
        path[-1].refs += 1
    new = store.refs[h] = ConversationRef(h, agent, path, ref.size)
    new.touched = store.clock()
    agent.handles += 1
    agent.logical_bytes += ref.size
    agent.by_type[_CONVERSATION] += ref.size
    return h


def unref_node(store: Store, node: MessageNode | None) -> None:
    """Drop one ref on ``node``; free it, and up the chain, while counts reach zero."""
    nodes = store.nodes
    while node is not None:
        node.refs -= 1
        if node.refs:
            return
        del nodes[node.id]
        store.unref_chunks(node.chunks)
        node = node.parent
