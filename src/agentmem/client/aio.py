"""The asyncio client: the same operations as :class:`~agentmem.client.Client`, awaitable.

Many tasks may share one ``AsyncClient``: requests are pipelined on the connection and each
reply is matched to its request by id. Only this module imports asyncio, so synchronous agents
never pay for it (~10 MiB of PSS per process, DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

from agentmem import stats as wire_stats
from agentmem.client.client import (
    CLOSED,
    _default_name,
    _message_list,
    _profile_every,
    alloc_request,
    iter_message_views,
    open_names,
    prefetched,
    read_views,
    resident_bytes,
    rest,
    unpack_reply,
    views_request,
    views_stop,
)
from agentmem.client.profile import Sampler
from agentmem.config import default_socket_path, trim_on_idle
from agentmem.errors import DaemonUnavailable, InvalidArgument, ProtocolError, StoreClosed
from agentmem.ids import Handle
from agentmem.protocol import fdpass, framing
from agentmem.protocol import messages as m
from agentmem.states import AgentState, SMUType
from agentmem.stats import AgentStats, StoreStats


class AsyncUnixTransport:
    """A non-blocking Unix socket driven by the running event loop's reader callbacks."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._sock: socket.socket | None = sock
        self._loop = loop
        self._inbox = fdpass.FdInbox()
        self._waiters: dict[int, asyncio.Future[tuple[dict[str, object], list[int]]]] = {}
        self._send_lock = asyncio.Lock()
        loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    async def open(cls, path: str) -> AsyncUnixTransport:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(f"no daemon answers on {path}: {exc.strerror or exc}") from exc
        return cls(sock, loop)

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            received = fdpass.recv_frames(sock, self._inbox)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, EOFError, ProtocolError) as exc:
            self._fail(exc)
            return
        for item in received:
            ident = item.frame.body.get("id")
            waiter = self._waiters.pop(ident, None) if isinstance(ident, int) else None
            if waiter is None or waiter.done():
                for fd in item.fds:
                    os.close(fd)
                continue
            waiter.set_result((item.frame.body, list(item.fds)))

    def _fail(self, exc: BaseException) -> None:
        # A peer that broke the protocol is named as such, as by the sync transport.
        error: Exception = (
            exc
            if isinstance(exc, ProtocolError)
            else DaemonUnavailable(f"the daemon connection broke: {exc}")
        )
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._waiters.clear()
        self.close()

    async def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[int]]:
        sock = self._sock
        if sock is None:
            raise DaemonUnavailable("the connection is closed")
        ident = msg["id"]
        assert isinstance(ident, int)
        try:
            frame = framing.encode(msg, fds=bool(fds))
        except OverflowError:
            raise InvalidArgument(m.OUT_OF_RANGE) from None
        waiter: asyncio.Future[tuple[dict[str, object], list[int]]] = self._loop.create_future()
        self._waiters[ident] = waiter
        try:
            async with self._send_lock:
                await self._send(sock, frame, fds)
        except OSError as exc:
            self._waiters.pop(ident, None)
            self._fail(exc)
            raise DaemonUnavailable(f"the daemon connection broke: {exc}") from exc
        return await waiter

    async def _send(self, sock: socket.socket, frame: bytes, fds: Sequence[int]) -> None:
        view = memoryview(frame)
        if fds:
            while True:
                try:
                    sent = fdpass_sendmsg(sock, view, fds)
                    break
                except (BlockingIOError, InterruptedError):
                    await self._writable(sock)
            view = view[sent:]
        if view:
            await self._loop.sock_sendall(sock, view)

    async def _writable(self, sock: socket.socket) -> None:
        ready = self._loop.create_future()
        self._loop.add_writer(sock.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            self._loop.remove_writer(sock.fileno())

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            self._inbox.close()
            sock.close()


def fdpass_sendmsg(sock: socket.socket, data: memoryview, fds: Sequence[int]) -> int:
    """One non-blocking ``sendmsg`` with ``fds`` riding on the first byte."""
    import array

    rights = array.array("i", fds).tobytes()
    return sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])


class AsyncTransport(Protocol):
    """What :class:`AsyncClient` needs of a transport (see ``client.transport.Transport``)."""

    async def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[Any]]: ...

    def close(self) -> None: ...


class AsyncClient:
    """One agent's asyncio connection. ``async with`` it, or ``await close()``.

    ``profile_allocs=N`` attaches the caller's stack to one ``alloc_smu`` in N (0: never).
    """

    def __init__(self, transport: AsyncTransport, *, profile_allocs: int = 0) -> None:
        self._transport: AsyncTransport | None = transport
        self._sampler = Sampler(profile_allocs) if profile_allocs else None
        #: As ``Client.trim_on_idle`` and ``Client.trims``.
        self.trim_on_idle = trim_on_idle()
        self.trims = 0
        self._trimmed_at = float("-inf")
        self._resident_at_start = resident_bytes() if self.trim_on_idle else 0
        self._ids = itertools.count(1)
        self._maps: dict[int, memoryview] = {}
        self.name = ""
        self.pid = 0
        #: As ``Client.opened``: handles of the published names opened in the handshake.
        self.opened: dict[str, Handle] = {}
        self._prefetched: dict[Handle, list[memoryview]] = {}

    async def hello(
        self,
        name: str | None = None,
        importance: int = 0,
        state: AgentState | str = "active",
        open: Sequence[str] = (),
    ) -> None:
        """Register this agent (done by :func:`connect`); ``open`` as in :func:`connect`."""
        st = AgentState.parse(state)
        name = name or _default_name()
        names = open_names(open)
        extra: dict[str, object] = {"open": names, "read": True} if names else {}
        info, attachments = await self._call_with(
            m.hello(0, name, importance=importance, state=st.label, **extra)
        )
        self.name, self.pid = info["agent"], info["pid"]
        self.opened = {k: Handle(v) for k, v in info.get("opened", {}).items()}
        self._prefetched = prefetched(info.get("reads"), self.opened, attachments, self._maps)

    async def _call_with(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[Any, list[int]]:
        transport = self._transport
        if transport is None:
            raise StoreClosed(CLOSED)
        ident = next(self._ids)
        msg["id"] = ident
        reply, attachments = await transport.request(msg, fds)
        return unpack_reply(reply, attachments, ident, self._maps), attachments

    async def _call(self, msg: dict[str, object], fds: Sequence[int] = ()) -> Any:
        result, _ = await self._call_with(msg, fds)
        return result

    async def _op(self, op: str, **args: object) -> Any:
        return await self._call({"op": op, **args})

    async def alloc_smu(self, smu_type: SMUType | str, data: object) -> Handle:
        """See :meth:`Client.alloc_smu`."""
        msg, fd = alloc_request(smu_type, data, self._sampler)
        if fd < 0:
            return Handle(await self._call(msg))
        try:
            return Handle(await self._call(msg, [fd]))
        finally:
            os.close(fd)

    async def publish(self, handle: Handle, name: str) -> None:
        """See :meth:`Client.publish`."""
        await self._op("publish", handle=handle, name=name)

    async def unpublish(self, name: str) -> None:
        await self._op("unpublish", name=name)

    async def open(self, name: str) -> Handle:
        return Handle(await self._op("open", name=name))

    async def share_content(self, handle: Handle, target: str) -> Handle:
        return Handle(await self._op(m.OP_SHARE_CONTENT, handle=handle, target=target))

    async def mark_hot(self, handle: Handle, hot: bool = True) -> None:
        await self._op(m.OP_MARK_HOT, handle=handle, hot=bool(hot))

    async def get_stats(
        self, agent: str | None = None, *, daemon: bool = False, recent: bool = False
    ) -> StoreStats | AgentStats:
        """See :meth:`Client.get_stats`."""
        args: dict[str, object] = {"agent": agent}
        if daemon:
            args["daemon"] = True
        if recent:
            args["recent"] = True
        data = await self._op(m.OP_GET_STATS, **args)
        if agent is None:
            return wire_stats.store_stats_from_wire(data)
        return wire_stats.agent_stats_from_wire(data)

    async def read(self, handle: Handle) -> memoryview:
        views = await self.views(handle)
        return views[0] if len(views) == 1 else memoryview(b"".join(views))

    async def views(self, handle: Handle) -> list[memoryview]:
        views = self._prefetched.pop(handle, None) if self._prefetched else None
        if views is not None:
            return views
        result, attachments = await self._call_with({"op": m.OP_READ, "handle": handle})
        return read_views(result, attachments, self._maps)

    async def release(self, handle: Handle) -> None:
        self._prefetched.pop(handle, None)
        await self._op(m.OP_RELEASE, handle=handle)

    async def demote(self, handle: Handle) -> int:
        return int(await self._op("demote", handle=handle))

    async def set_state(
        self, state: AgentState | str | None = None, importance: int | None = None
    ) -> None:
        label = None if state is None else AgentState.parse(state).label
        await self._op(m.OP_SET_STATE, state=label, importance=importance)
        rest(self, label)

    async def append(self, handle: Handle, message: bytes | str) -> int:
        return int(await self._op(m.OP_APPEND, handle=handle, message=message))

    async def extend(self, handle: Handle, messages: Iterable[bytes | str]) -> int:
        return int(await self._op(m.OP_APPEND, handle=handle, messages=_message_list(messages)))

    async def fork(self, handle: Handle) -> Handle:
        return Handle(await self._op(m.OP_FORK, handle=handle))

    async def messages(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> list[bytes]:
        out: list[bytes] = []
        pos: int | None = start
        while pos is not None:
            result = await self._op(m.OP_MESSAGES, handle=handle, start=pos, stop=stop)
            out.extend(result["messages"])
            pos = result["next"]
        return out

    async def message_views(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> list[memoryview]:
        """See :meth:`Client.message_views`."""
        return [view async for view in self.iter_message_views(handle, start, stop)]

    async def iter_message_views(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[memoryview]:
        """See :meth:`Client.iter_message_views`."""
        pos: int | None = start
        end = stop
        while pos is not None:
            result, attachments = await self._call_with(views_request(handle, pos, end))
            end = views_stop(start, end, result)
            for view in iter_message_views(result, attachments, {}):
                yield view
            pos = result["next"]

    async def length(self, handle: Handle) -> int:
        return int(await self._op("length", handle=handle))

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._maps.clear()
        self._prefetched.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect(
    socket_path: str | None = None,
    *,
    name: str | None = None,
    importance: int = 0,
    state: AgentState | str = AgentState.ACTIVE,
    autostart: bool | None = None,
    profile_allocs: bool | int | None = None,
    open: Sequence[str] = (),
) -> AsyncClient:
    """Connect an asyncio agent to the daemon (starting one on first use, as the sync client).
    ``profile_allocs`` and ``open`` as in :func:`agentmem.client.connect`."""
    every = _profile_every(profile_allocs)
    path = socket_path or default_socket_path()
    if autostart is None:
        autostart = socket_path is None
    try:
        transport = await AsyncUnixTransport.open(path)
    except DaemonUnavailable:
        if not autostart:
            raise
        from agentmem.client.autostart import start_daemon

        await asyncio.get_running_loop().run_in_executor(None, start_daemon, path)
        transport = await AsyncUnixTransport.open(path)
    client = AsyncClient(transport, profile_allocs=every)
    try:
        await client.hello(name, importance, state, open)
    except BaseException:
        await client.close()
        raise
    return client
