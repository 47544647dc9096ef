"""Conversations: append-only chains of messages with prefix-chained ids.

A message node's id is BLAKE3(parent id || content id), so two conversations that start with
the same messages share the same nodes, and a fork costs one ref, not a copy. A conversation
ref holds only its tip (one ref on the tip node); every node holds one ref on its parent.
Freeing walks up the chain iteratively (histories of thousands of messages must not recurse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentmem import constants
from agentmem.errors import TooLarge
from agentmem.hashing import chunk_id, message_id
from agentmem.ids import Handle
from agentmem.states import SMUType
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
    path = ref.path
    parent = path[-1] if path else None
    cid = chunk_id(buf)
    mid = message_id(None if parent is None else parent.id, cid)
    node = store.nodes.get(mid)
    if node is None:
        # Sizes are interned (one int object per distinct size; see Store._sizes).
        node = MessageNode(
            mid, parent, store.ingest_chunks(buf, _CONVERSATION, cid), store.intern_size(size)
        )
        store.nodes[mid] = node
        if parent is not None:
            parent.refs += 1  # the child's claim on its parent
    node.refs += 1  # the ref's claim on its new tip
    if parent is not None:
        unref_node(store, parent)  # the ref no longer has its old tip
    path.append(node)
    ref.size += size
    agent = ref.agent
    agent.logical_bytes += size
    agent.by_type[_CONVERSATION] += size
    return node


def fork(store: Store, ref: ConversationRef, agent: Agent) -> Handle:
    """A new conversation ref for ``agent`` at the same tip."""
    h = Handle(next(store._handles))
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
