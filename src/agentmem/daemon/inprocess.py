"""The in-process transport: the client API against a service in the same process.

For programs that run many asyncio agents in one interpreter: each agent gets its own client
and session (its own handles, its own agent in the stats), with no daemon, no socket and no
serialisation. Hot segments are handed to the client as read-only views of the store's own
mapping, so reads stay zero-copy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from agentmem.config import Config
from agentmem.daemon.service import Service
from agentmem.errors import DaemonUnavailable

_SHARED: Service | None = None


def shared_service(config: Config | None = None) -> Service:
    """The process-wide service that in-process clients share (created on first use)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Service(config if config is not None else Config.from_env())
    return _SHARED


class InProcessTransport:
    """A transport that calls :meth:`Service.handle` directly. Not thread-safe."""

    def __init__(self, service: Service | None = None) -> None:
        self.service = service if service is not None else shared_service()
        self._session = self.service.open(os.getpid(), os.getuid())
        self._closed = False

    def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[int | memoryview]]:
        if self._closed:
            raise DaemonUnavailable("the connection is closed")
        # The service takes ownership of the fds it is given; the caller keeps its own.
        owned = tuple(os.dup(fd) for fd in fds)
        reply = self.service.handle(self._session, msg, owned)
        if reply.sync:
            self.service.sync()
        return reply.body, [seg.view_all for seg in reply.segments]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.service.close(self._session)


class AsyncInProcessTransport:
    """:class:`InProcessTransport` for the asyncio client: calls return without awaiting I/O."""

    def __init__(self, service: Service | None = None) -> None:
        self._sync = InProcessTransport(service)

    async def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[int | memoryview]]:
        return self._sync.request(msg, fds)

    def close(self) -> None:
        self._sync.close()
