"""Identifiers: chunk ids, message ids and handles.

A *chunk id* is the 32-byte BLAKE3 digest of a chunk's plain bytes. A *message id* chains the
parent message id with the message's content, so two conversations with the same history share
the same message ids (prefix identity). A *handle* is a small integer meaningful only to the
caller it was issued to, like a file descriptor.
"""

from __future__ import annotations

# Not ``from typing import ...``: every agent process imports this module, and ``typing``
# costs ~0.55 MiB of heap a process that agents built without it never pay
# (tests/client/test_light.py). Type checkers read this name as always true.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NewType

    #: BLAKE3-256 of a chunk's plain bytes (32 bytes).
    ChunkId = NewType("ChunkId", bytes)
    #: BLAKE3-256 of ``parent message id || content id`` (32 bytes); the root's parent is empty.
    MessageId = NewType("MessageId", bytes)
    #: A caller's reference to an SMU; issued by the store, meaningful to its holder only.
    Handle = NewType("Handle", int)
else:

    def _same(value):  # what a NewType does at run time
        return value

    ChunkId = MessageId = Handle = _same


def short(ident: bytes) -> str:
    """First 12 hex digits of an id, for logs and error messages."""
    return ident[:6].hex()
