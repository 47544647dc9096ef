"""``agentmem.aio.connect()``: the asyncio client (imports asyncio; the sync client does not)."""

from __future__ import annotations

from collections.abc import Sequence

from agentmem.client.aio import AsyncClient
from agentmem.client.aio import connect as _connect
from agentmem.errors import InvalidArgument
from agentmem.states import AgentState

__all__ = ["AsyncClient", "connect"]


async def connect(
    socket_path: str | None = None,
    *,
    inprocess: bool = False,
    name: str | None = None,
    importance: int = 0,
    state: AgentState | str = AgentState.ACTIVE,
    autostart: bool | None = None,
    open: Sequence[str] = (),
) -> AsyncClient:
    """Connect an asyncio agent: to the daemon (started on first use), or with
    ``inprocess=True`` to the store shared by this process's in-process agents. ``open``:
    published names opened in the handshake, their content with it (``client.opened``)."""
    if inprocess and (socket_path is not None or autostart):
        raise InvalidArgument("inprocess=True uses no daemon: give no socket_path or autostart")
    if inprocess:
        from agentmem.daemon.inprocess import AsyncInProcessTransport

        client = AsyncClient(AsyncInProcessTransport())
        await client.hello(name, importance, state, open)
        return client
    return await _connect(
        socket_path,
        name=name,
        importance=importance,
        state=state,
        autostart=autostart,
        open=open,
    )
