"""The client: the store's API over a transport (a daemon's socket, or in-process).

Never imports the store, asyncio or psutil (checked by import-linter and a PSS test).
"""

from __future__ import annotations

from agentmem.client.client import Client, connect
from agentmem.client.transport import Transport, UnixSocketTransport

__all__ = ["Client", "Transport", "UnixSocketTransport", "connect"]
