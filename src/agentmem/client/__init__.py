"""The client: the store's API over a transport (a daemon's socket, or in-process).

Never imports the store, asyncio or psutil (checked by import-linter and a PSS test).
"""

from __future__ import annotations

from agentmem.client.client import Client, connect
from agentmem.client.transport import Transport, UnixSocketTransport

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from agentmem.client.conversation import Conversation

__all__ = ["Client", "Conversation", "Transport", "UnixSocketTransport", "connect"]


def __getattr__(name: str) -> object:
    # json and the list machinery load only for agents that use conversations.
    if name == "Conversation":
        from agentmem.client.conversation import Conversation

        return Conversation
    raise AttributeError(f"module 'agentmem.client' has no attribute {name!r}")
