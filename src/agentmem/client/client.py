"""The synchronous client: the store's API, served by a daemon (or in-process).

Light on purpose: importing it pulls in neither asyncio nor psutil (an agent process pays for
every module it imports, DESIGN.md), only the protocol and msgpack.

Zero-copy reads: hot content larger than the daemon's inline limit arrives as extents of
segments; the client maps each segment read-only once (``MAP_SHARED``, from the sealed fd) and
returns ``memoryview`` slices of the mapping. A single-extent SMU (the usual case for a prompt
many agents share) is read with no copy at all. Mappings of segments the daemon retires are
dropped when it says so; views already handed out keep their pages.

Not thread-safe: use one client per thread (or the asyncio client).
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from agentmem.client.transport import Attachment, Transport, UnixSocketTransport
from agentmem.config import default_socket_path
from agentmem.config import trim_on_idle as _trim_on_idle
from agentmem.errors import (
    DaemonUnavailable,
    InvalidArgument,
    ProtocolError,
    StoreClosed,
    UnknownHandle,
)
from agentmem.ids import Handle
from agentmem.protocol import messages as m
from agentmem.states import AgentState, SMUType

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Any, Protocol

    from agentmem.client.conversation import Conversation
    from agentmem.client.profile import Sampler
    from agentmem.stats import AgentStats, StoreStats

#: States in which a client gives its process's free heap back (``Client.set_state``).
RESTING = frozenset({AgentState.IDLE.label, AgentState.PAUSED.label})
#: Seconds between two such give-backs at least.
TRIM_INTERVAL = 1.0
#: Resident bytes the process must have grown by since it connected before a give-back: below
#: it, loading ``ctypes`` (~0.33 MiB) would cost more than glibc could return. Measured on 100
#: corpus-profile agents (~1 MB of data each): giving back at every rest took the swarm from
#: 936.3 to 946.3 MiB; seed-profile agents grow by tens of MiB and give back ~1.2 MiB each.
TRIM_MIN_GROWTH = 8 << 20

#: Content above this many bytes is handed to the daemon in a sealed memfd instead of inline:
#: the frame limit is 16 MiB, and a memfd avoids copying large content through the socket.
MEMFD_MIN = 1 << 20


_connections = itertools.count(1)

#: SMU type names as callers spell them -> the wire label (``SMUType.label`` is an enum
#: property lookup, ~0.5 us a call); anything else goes through ``SMUType.parse``.
_TYPE_LABELS: dict[object, str] = {t.label: t.label for t in SMUType}
_CONVERSATION = SMUType.CONVERSATION.label
#: What a call on a client after its ``close()`` raises (``StoreClosed``, never
#: ``DaemonUnavailable``: a caller that retries while the daemon is away must not retry this).
CLOSED = "the client is closed: connect again for a new one"


def _default_name() -> str:
    """``<program>-<pid>`` for a process's first agent, ``<program>-<pid>-<n>`` after: agent
    names are unique in a domain, and one process may run many agents."""
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    if prog in ("", "-", "-c"):  # python -c / python - (stdin) / an embedded interpreter
        prog = "python"
    n = next(_connections)
    suffix = "" if n == 1 else f"-{n}"
    return f"{prog}-{os.getpid()}{suffix}"


class Client:
    """One agent's connection. Use as a context manager, or call :meth:`close`.

    Reconnect-safe: when the daemon goes away, the call in flight raises ``DaemonUnavailable``;
    if the client was given a ``reconnect`` factory (``connect()`` gives one), the next call
    opens a new connection under the same name first. If the daemon crashed and restarted with
    its journal, the agent's conversations come back under the same handles (``restored``), with
    every acknowledged append in them; other handles are gone and raise ``UnknownHandle``.
    After :meth:`close`, every call raises ``StoreClosed`` (no reconnect).

    ``observer=True`` connects without registering an agent (``agentmem stats`` and ``top``
    do): the client may then only read statistics. ``profile_allocs=N`` attaches the caller's
    stack to one ``alloc_smu`` in N (:mod:`agentmem.client.profile`; 0: never).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str | None = None,
        importance: int = 0,
        state: AgentState | str = AgentState.ACTIVE,
        reconnect: Callable[[], Transport] | None = None,
        observer: bool = False,
        profile_allocs: int = 0,
        open: Sequence[str] = (),
        trim_on_idle: bool = True,
    ) -> None:
        self._transport: Transport | None = transport
        #: Give the process's free heap back when the agent reports itself idle or paused
        #: (``agentmem/heap.py``), at most once a TRIM_INTERVAL; ``trims`` counts them.
        self.trim_on_idle = trim_on_idle
        self.trims = 0
        self._trimmed_at = float("-inf")
        self._resident_at_start = resident_bytes() if trim_on_idle else 0
        self._open_names = open_names(open)
        #: Handles of the published names asked for with ``open``, opened in the handshake.
        self.opened: dict[str, Handle] = {}
        #: The content of opened handles as the handshake brought it, for their first read.
        self._prefetched: dict[Handle, list[memoryview]] = {}
        self._reconnect = reconnect
        self._broken = False
        self._ids = itertools.count(1)
        self._maps: dict[int, memoryview] = {}
        self._importance = importance
        self._state = AgentState.parse(state)
        self.name: str = name or _default_name()
        self.observer = observer
        self._sampler: Sampler | None = None
        if profile_allocs:
            from agentmem.client.profile import Sampler

            self._sampler = Sampler(profile_allocs)
        #: Times this client reopened its connection after the daemon went away.
        self.reconnects = 0
        self._hello()

    def _hello(self, *, open_names: bool = True) -> None:
        extra: dict[str, object] = {"observer": True} if self.observer else {}
        if self._open_names and open_names:
            # The opened content comes with the reply: spawn is one round trip, not two.
            extra["open"], extra["read"] = self._open_names, True
        info, attachments = self._call_with(
            m.hello(0, self.name, importance=self._importance, state=self._state.label, **extra)
        )
        assert isinstance(info, dict)
        self.name = info["agent"]
        self.pid: int = info["pid"]
        self.inline_max: int = info["inline_max"]
        self.opened = {k: Handle(v) for k, v in info.get("opened", {}).items()}
        self._prefetched = prefetched(info.get("reads"), self.opened, attachments, self._maps)
        #: Handles this agent held when the daemon last crashed, given back by the new one
        #: (conversations are journaled; they keep their numbers).
        self.restored: list[Handle] = [Handle(h) for h in info.get("restored", ())]

    def _revive(self) -> Transport:
        """A new connection under the same name, in place of the broken one; returns it."""
        assert self._reconnect is not None
        old, self._transport = self._transport, (new := self._reconnect())
        if old is not None:
            old.close()
        self._maps.clear()
        self._prefetched.clear()
        self._broken = False
        self.reconnects += 1
        try:
            self._hello()
        except UnknownHandle:
            if not self._open_names:
                raise
            # A restarted daemon whose names are not published again yet: the agent takes its
            # journaled conversations back all the same; what it opened waits for the names.
            self._hello(open_names=False)
        return new

    # --- plumbing --------------------------------------------------------------------------

    def _call(self, msg: dict[str, object], fds: Sequence[int] = ()) -> Any:
        # :meth:`_call_with` written out: every plain request (most of them) goes through here,
        # and saves the extra call frame and the tuple of (result, attachments).
        transport = self._transport
        if transport is None:  # closed by close(): not the daemon's absence, no reconnect
            raise StoreClosed(CLOSED)
        if self._broken and self._reconnect is not None:
            transport = self._revive()
        ident = msg["id"] = next(self._ids)
        try:
            reply, attachments = transport.request(msg, fds)
        except DaemonUnavailable:
            self._broken = True
            raise
        return unpack_reply(reply, attachments, ident, self._maps)

    def _call_with(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[Any, list[Attachment]]:
        transport = self._transport
        if transport is None:  # closed by close(): not the daemon's absence, no reconnect
            raise StoreClosed(CLOSED)
        if self._broken and self._reconnect is not None:
            transport = self._revive()
        ident = msg["id"] = next(self._ids)
        try:
            reply, attachments = transport.request(msg, fds)
        except DaemonUnavailable:
            self._broken = True
            raise
        return unpack_reply(reply, attachments, ident, self._maps), attachments

    def _op(self, op: str, **args: object) -> Any:
        return self._call({"op": op, **args})

    # --- the four calls --------------------------------------------------------------------

    def alloc_smu(self, smu_type: SMUType | str, data: object) -> Handle:
        """Store ``data`` (bytes, str; for a conversation a list of messages); return a handle."""
        msg, fd = alloc_request(smu_type, data, self._sampler)
        if fd < 0:
            return self._call(msg)  # type: ignore[no-any-return]  # a handle (an int)
        try:
            return self._call(msg, [fd])  # type: ignore[no-any-return]
        finally:
            os.close(fd)

    def publish(self, handle: Handle, name: str) -> None:
        """Publish the content under ``name``: any agent of the domain may then :meth:`open` it
        (or name it in ``connect(open=[...])``), also after this agent is gone."""
        self._op("publish", handle=handle, name=name)

    def unpublish(self, name: str) -> None:
        """Withdraw a published name (handles already opened stay valid)."""
        self._op("unpublish", name=name)

    def open(self, name: str) -> Handle:
        """A handle on the content published as ``name``; ``UnknownHandle`` if none is."""
        return Handle(self._op("open", name=name))

    def share_content(self, handle: Handle, target: str) -> Handle:
        """Give the connected agent ``target`` its own handle on the content; return it."""
        return self._call({"op": m.OP_SHARE_CONTENT, "handle": handle, "target": target})  # type: ignore[no-any-return]

    def mark_hot(self, handle: Handle, hot: bool = True) -> None:
        """Pin the content in the hot tier (or unpin it)."""
        self._op(m.OP_MARK_HOT, handle=handle, hot=bool(hot))

    def get_stats(
        self, agent: str | None = None, *, daemon: bool = False, recent: bool = False
    ) -> StoreStats | AgentStats:
        """The domain's statistics, or one agent's. Domain only: ``daemon=True`` adds the
        daemon section (``StoreStats.daemon``: its PSS, uptime, agents by state, ...);
        ``recent=True`` takes the daemon's last once-a-second statistics (at most a second
        old, costing the daemon nothing; see docs/protocol.md) instead of computing them."""
        from agentmem import stats as wire_stats  # dataclasses: paid only by callers of stats

        args: dict[str, object] = {"agent": agent}
        if daemon:
            args["daemon"] = True
        if recent:
            args["recent"] = True
        data = self._op(m.OP_GET_STATS, **args)
        if agent is None:
            return wire_stats.store_stats_from_wire(data)
        return wire_stats.agent_stats_from_wire(data)

    def alloc_profile(self, *, reset: bool = False) -> dict[str, Any]:
        """The domain's allocation profile: ``{"stacks": [[stack, bytes], ...], "samples",
        "bytes"}``, most bytes first (bytes of sampled allocations times their sampling
        weight). ``reset=True`` starts a new profile after this one."""
        args: dict[str, object] = {"reset": True} if reset else {}
        return dict(self._op(m.OP_ALLOC_PROFILE, **args))

    def check(self, *, repair: bool = False) -> dict[str, Any]:
        """Verify the domain: every chunk re-hashed against its id in every tier, refcounts
        recomputed (mark-sweep); ``repair=True`` fixes what it can first. The report's keys
        are in docs/protocol.md (``check``); ``report["ok"]`` is True when all is well."""
        return dict(self._op("check", repair=repair))

    # --- content ---------------------------------------------------------------------------

    def read(self, handle: Handle) -> memoryview:
        """The content, read-only: zero-copy when it lies in one hot extent, else joined."""
        views = self._prefetched.pop(handle, None) if self._prefetched else None
        if views is None:
            result, attachments = self._call_with({"op": m.OP_READ, "handle": handle})
            data = result.get("data")
            if data is not None:  # inline
                return memoryview(data)
            views = read_views(result, attachments, self._maps)
        if len(views) == 1:
            return views[0]
        return memoryview(b"".join(views))

    def views(self, handle: Handle) -> list[memoryview]:
        """The content as read-only pieces in order (zero-copy for hot extents)."""
        views = self._prefetched.pop(handle, None) if self._prefetched else None
        if views is not None:
            return views
        result, attachments = self._call_with({"op": m.OP_READ, "handle": handle})
        return read_views(result, attachments, self._maps)

    def release(self, handle: Handle) -> None:
        """Drop the handle; content is freed when no agent holds it."""
        self._prefetched.pop(handle, None)
        self._call({"op": m.OP_RELEASE, "handle": handle})

    def demote(self, handle: Handle) -> int:
        """Move the content to the warm (compressed) tier now; returns bytes moved."""
        return int(self._op("demote", handle=handle))

    def handles(self) -> list[dict[str, Any]]:
        """This agent's handles: ``{"handle", "type", "size"}`` each (shares to it included)."""
        return list(self._op("handles"))

    def set_state(
        self, state: AgentState | str | None = None, importance: int | None = None
    ) -> None:
        """Report this agent's state (``active``/``paused``/``idle``) and/or importance."""
        label = None if state is None else AgentState.parse(state).label
        self._op(m.OP_SET_STATE, state=label, importance=importance)
        rest(self, label)

    # --- conversations ---------------------------------------------------------------------

    def append(self, handle: Handle, message: bytes | str) -> int:
        """Append a message; returns the conversation's new length."""
        return self._call({"op": m.OP_APPEND, "handle": handle, "message": message})  # type: ignore[no-any-return]

    def extend(self, handle: Handle, messages: Iterable[bytes | str]) -> int:
        """Append several messages in one request; returns the new length."""
        return int(self._op(m.OP_APPEND, handle=handle, messages=_message_list(messages)))

    def fork(self, handle: Handle) -> Handle:
        """A new handle on the same history."""
        return Handle(self._op(m.OP_FORK, handle=handle))

    def messages(self, handle: Handle, start: int = 0, stop: int | None = None) -> list[bytes]:
        """Messages ``start:stop`` (slice semantics)."""
        out: list[bytes] = []
        pos: int | None = start
        while True:
            result = self._op(m.OP_MESSAGES, handle=handle, start=pos, stop=stop)
            out.extend(result["messages"])
            pos = result["next"]
            if pos is None:
                return out

    def message_views(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> list[memoryview]:
        """Messages ``start:stop`` (slice semantics) as read-only views, one per message:
        slices of the conversation's own hot segments, mapped once and never copied, where
        they lie there (what this handle appended, once its conversation passed 16 KiB); the
        bytes of the others (a forked prefix, demoted or small content). What the daemon sends
        per reply is ~3 bytes a message plus the copied ones, so a 30 MB history costs one
        round trip. Views stay valid while kept, even after the handle is released; the
        segments are mapped for this call only, and unmapped once its views are dropped."""
        return list(self.iter_message_views(handle, start, stop))

    def iter_message_views(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> Iterator[memoryview]:
        """:meth:`message_views` one view at a time, for a caller that streams them (a request
        body written to a socket): the daemon's replies are asked for as the iteration
        reaches them, and no list of 15,000 views is built. A history of that length read
        into a list a turn kept ~3 MiB of small-object arenas in an agent process (their
        pools never return to the system while one object in them lives); streamed, the same
        few hundred blocks are reused. Other calls on this client may come between two views.
        The range is that of the conversation when the first reply came: messages appended
        since are not in it. Errors are raised when the iteration reaches them."""
        pos: int | None = start
        end = stop
        while pos is not None:
            result, attachments = self._call_with(views_request(handle, pos, end))
            end = views_stop(start, end, result)
            yield from iter_message_views(result, attachments, {})
            pos = result["next"]

    def length(self, handle: Handle) -> int:
        """Number of messages in the conversation."""
        return int(self._op("length", handle=handle))

    def conversation(
        self, messages: Iterable[dict[str, Any]] = (), *, handle: Handle | None = None
    ) -> Conversation:
        """A list-like :class:`~agentmem.client.conversation.Conversation` of message dicts.

        New, holding ``messages`` (stored as compact JSON); or, with ``handle``, this client's
        existing conversation (then ``messages`` must be empty: append to it instead). Raises
        ``InvalidArgument`` if a message is not a JSON-serialisable dict (nothing is stored),
        ``UnknownHandle`` or ``WrongType`` for a ``handle`` that is not this client's
        conversation.
        """
        # Imported here: json (and re) are paid only by agents that use conversations.
        from agentmem.client.conversation import Conversation

        if handle is None:
            return Conversation._create(self, messages)
        if list(messages):
            raise InvalidArgument("give messages or handle, not both; then append to it")
        self.length(handle)  # fail now, not at first use, if it is not a conversation
        return Conversation(self, handle)

    # --- lifecycle -------------------------------------------------------------------------

    def set_timeout(self, seconds: float | None) -> None:
        """Bound each later request of this connection to ``seconds`` (None: wait as long as
        the daemon takes); past it the call raises ``DaemonUnavailable``. A connection made
        again after the daemon went away has ``connect``'s ``timeout``. No effect in-process."""
        transport = self._transport
        if transport is None:
            raise StoreClosed(CLOSED)
        settimeout = getattr(transport, "settimeout", None)
        if settimeout is not None:
            settimeout(seconds)

    def close(self) -> None:
        """Close the connection; the daemon releases every handle this agent held."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._maps.clear()
        self._prefetched.clear()

    @property
    def closed(self) -> bool:
        return self._transport is None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resident_bytes() -> int:
    """The process's resident set (``/proc/self/statm``); 0 where there is none."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


if TYPE_CHECKING:

    class _Resting(Protocol):
        trim_on_idle: bool
        trims: int
        _trimmed_at: float
        _resident_at_start: int


def rest(client: _Resting, state: str | None) -> None:
    """The client's agent reported ``state``: if it rests, return the process's free heap
    pages (``agentmem/heap.py``), at most once a TRIM_INTERVAL (an agent that rests between
    every turn pays once a second, not once a turn). For the sync and the asyncio client."""
    if state not in RESTING or not client.trim_on_idle:
        return
    now = time.monotonic()
    if now - client._trimmed_at < TRIM_INTERVAL:
        return
    client._trimmed_at = now
    if resident_bytes() - client._resident_at_start < TRIM_MIN_GROWTH:
        return
    from agentmem import heap  # ctypes, on the first call only

    if heap.give_back():
        client.trims += 1


def alloc_request(
    smu_type: SMUType | str, data: object, sampler: Sampler | None
) -> tuple[dict[str, object], int]:
    """The ``alloc_smu`` request for ``data``, and the sealed memfd carrying it (-1: inline).

    Content of ``MEMFD_MIN`` bytes or more travels in a memfd the caller passes and closes.
    Raises ``InvalidArgument`` (an unknown type included) before anything is sent.
    """
    label = _TYPE_LABELS.get(smu_type) if smu_type.__class__ is str else None
    if label is None:
        label = SMUType.parse(smu_type).label
    msg: dict[str, object] = {"op": m.OP_ALLOC_SMU, "type": label}
    if sampler is not None:
        # depth 3: past this function and the client's alloc_smu, to the caller of alloc_smu
        stack = sampler.stack(3)
        if stack is not None:
            msg["stack"], msg["sample"] = stack, sampler.every
    if label == _CONVERSATION:
        msg["messages"] = _message_list(data)
        return msg, -1
    if data.__class__ is bytes and len(data) < MEMFD_MIN:
        msg["data"] = data
        return msg, -1
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidArgument(f"data must be bytes or str, not {type(data).__name__}")
    view = memoryview(data)
    if view.nbytes < MEMFD_MIN:
        msg["data"] = data if isinstance(data, bytes) else view.tobytes()
        return msg, -1
    msg["size"] = view.nbytes
    return msg, _sealed_memfd(view)


def unpack_reply(
    reply: dict[str, object],
    attachments: Sequence[Attachment],
    ident: int,
    maps: dict[int, memoryview],
) -> Any:
    """The result of a reply to request ``ident`` (raising the error it carries); drops the
    mappings of segments the daemon retired. Closes the attachments' fds if it raises."""
    if len(reply) == 2 and "ok" in reply:  # {"id", "ok"}: the usual success
        rid = reply.get("id")
        if rid == ident and rid.__class__ is int:
            return reply["ok"]
    try:
        if reply.get("id") != ident:
            raise ProtocolError(f"reply to request {reply.get('id')!r}, expected {ident}")
        retired = reply.get("retired")
        if isinstance(retired, list):
            for seg_id in retired:
                maps.pop(seg_id, None)
        return m.raise_for_reply(reply)
    except BaseException:
        for a in attachments:
            if isinstance(a, int):
                os.close(a)
        raise


def read_views(
    result: dict[str, Any], attachments: Sequence[Attachment], maps: dict[int, memoryview]
) -> list[memoryview]:
    """A ``read`` result as views: inline bytes, a private copy, or extents of segments (newly
    sent segments are mapped and kept in ``maps``)."""
    if "copy" in result:  # a private copy in a one-off memfd
        capacity, size = result["copy"]
        (att,) = attachments
        return [_map(att, capacity)[:size]]
    for (seg_id, capacity), att in zip(result.get("map", ()), attachments, strict=True):
        maps[seg_id] = _map(att, capacity)
    return _extent_views(result, maps)


def _extent_views(result: dict[str, Any], maps: dict[int, memoryview]) -> list[memoryview]:
    """The views a read ``result`` names: its inline bytes, or its extents of mapped segments."""
    if "data" in result:
        return [memoryview(result["data"])]
    return [maps[seg_id][off : off + n] for seg_id, off, n in result["extents"]]


def prefetched(
    reads: object,
    opened: dict[str, Handle],
    attachments: Sequence[Attachment],
    maps: dict[int, memoryview],
) -> dict[Handle, list[memoryview]]:
    """The ``reads`` of a ``hello`` reply as views per opened handle. The reply's attachments
    are the fds of each read in turn (the segments it maps first, or none); every one is
    mapped or closed, also when the reply is malformed (``ProtocolError``)."""
    out: dict[Handle, list[memoryview]] = {}
    at = 0  # attachments before this one are mapped (``_map`` closes the fd it maps)
    try:
        if not isinstance(reads, dict):
            if reads is not None:
                raise ProtocolError("'reads' of the hello reply is not a map")
            reads = {}
        for name, result in reads.items():
            handle = opened[name]
            for seg_id, capacity in result.get("map", ()):
                att = attachments[at]
                at += 1
                maps[seg_id] = _map(att, capacity)
            out[handle] = _extent_views(result, maps)
        if at != len(attachments):
            raise ProtocolError(f"the hello reply carries {len(attachments) - at} fds too many")
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        _close_from(attachments, at)
        raise ProtocolError(f"malformed reads in the hello reply: {exc!r:.200}") from None
    except BaseException:
        _close_from(attachments, at)
        raise
    return out


def _close_from(attachments: Sequence[Attachment], start: int) -> None:
    """Close the fds among ``attachments[start:]`` (those not mapped yet)."""
    for a in attachments[start:]:
        if isinstance(a, int):
            with contextlib.suppress(OSError):
                os.close(a)


def views_request(handle: Handle, start: int, stop: int | None) -> dict[str, object]:
    """The ``messages`` request with ``views`` (and sizes packed) for ``start:stop``."""
    return {
        "op": m.OP_MESSAGES,
        "handle": handle,
        "start": start,
        "stop": stop,
        "views": True,
        "packed": True,
    }


def views_stop(start: int, stop: int | None, result: dict[str, Any]) -> int:
    """``stop`` fixed as the daemon resolved it for the first reply of a views read, so the
    replies after it cover the same range however the conversation grows meanwhile."""
    if stop is None or stop < 0:
        return int(slice(start, stop).indices(result["length"])[1])
    return stop


def message_views(
    result: dict[str, Any], attachments: Sequence[Attachment], maps: dict[int, memoryview]
) -> list[memoryview]:
    """A ``messages`` reply with ``views`` as one view per message (see
    :func:`iter_message_views`); the segments sent with it are mapped into ``maps``."""
    return list(iter_message_views(result, attachments, maps))


def iter_message_views(
    result: dict[str, Any], attachments: Sequence[Attachment], maps: dict[int, memoryview]
) -> Iterator[memoryview]:
    """A ``messages`` reply with ``views``, one view per message as they are wanted: ``pieces``
    are the bytes of one message or an extent ``[segment, offset, length]`` of consecutive
    bytes of messages, ``sizes`` where each ends; the segments sent with it are mapped into
    ``maps`` first. A message whose bytes span two extents (a segment filled up in its middle)
    is joined: the one copy. ``ProtocolError`` (when the iteration reaches it) if the pieces
    and sizes disagree."""
    for (seg_id, capacity), att in zip(result["map"], attachments, strict=True):
        maps[seg_id] = _map(att, capacity)
    sizes = result["sizes"]
    if isinstance(sizes, bytes):  # packed: native uint32s
        if len(sizes) % 4:
            raise ProtocolError("packed message sizes are not whole uint32s")
        sizes = memoryview(sizes).cast("I")
    pieces = result["pieces"]
    if isinstance(pieces, bytes):  # packed: uint32 triples, inline messages apart
        if len(pieces) % 12:
            raise ProtocolError("packed message pieces are not whole uint32 triples")
        pieces = _unpacked(memoryview(pieces).cast("I"), result.get("inline"))
    count = 0  # messages yielded
    parts: list[memoryview] = []  # the current message's bytes so far, when it spans extents
    have = 0
    try:
        for piece in pieces:
            if isinstance(piece, bytes):
                if parts or len(piece) != sizes[count]:
                    raise ProtocolError("a message's bytes do not match its size")
                count += 1
                yield memoryview(piece)
                continue
            seg_id, off, n = piece
            seg, end = maps[seg_id], off + n
            while off < end:
                size = sizes[count]
                take = min(size - have, end - off)
                view = seg[off : off + take]
                off += take
                if not parts and take == size:
                    count += 1
                    yield view  # the common case: the whole message, no copy
                    continue
                parts.append(view)
                have += take
                if have == size:
                    count += 1
                    yield memoryview(b"".join(parts))
                    parts, have = [], 0
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed message views: {exc!r}") from None
    if parts or count != len(sizes):
        raise ProtocolError("message views cover fewer messages than their sizes say")


def _unpacked(words: memoryview, inline: object) -> Iterator[bytes | tuple[int, int, int]]:
    """Packed views pieces (``messages.PACKED_COPY``) one at a time: the bytes of an inline
    message, or an extent ``(segment, offset, length)``."""
    if not isinstance(inline, list):
        raise ProtocolError("packed message pieces come without their inline list")
    rest = iter(inline)
    for i in range(0, len(words), 3):
        seg_id = words[i]
        if seg_id == m.PACKED_INLINE:
            item = next(rest, None)
            if not isinstance(item, bytes) or len(item) != words[i + 2]:
                raise ProtocolError("packed message pieces and their inline list disagree")
            yield item
        else:
            yield (-1 if seg_id == m.PACKED_COPY else seg_id), words[i + 1], words[i + 2]
    if next(rest, None) is not None:
        raise ProtocolError("packed message pieces leave inline messages over")


def open_names(open: Sequence[str]) -> list[str]:
    """``connect``'s ``open`` as a list. ``InvalidArgument`` for one ``str``, whose characters
    would otherwise be opened one by one ("nothing is published as 'c'")."""
    if isinstance(open, str):
        raise InvalidArgument(f"open takes a list of published names: open=[{open!r}]")
    return list(open)


def _message_list(data: object) -> list[bytes | str]:
    if isinstance(data, bytes | bytearray | memoryview | str):
        raise InvalidArgument("messages must be given as an iterable of messages, not one buffer")
    try:
        items = list(data)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgument("messages must be an iterable") from None
    out: list[bytes | str] = []
    for item in items:
        if isinstance(item, bytes | str):
            out.append(item)
        elif isinstance(item, bytearray | memoryview):
            out.append(bytes(item))
        else:
            raise InvalidArgument(f"a message must be bytes or str, not {type(item).__name__}")
    return out


def _sealed_memfd(view: memoryview) -> int:
    import fcntl

    fd = os.memfd_create("agentmem-alloc", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL,
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _map(attachment: Attachment, capacity: int) -> memoryview:
    if isinstance(attachment, memoryview):
        return attachment
    try:
        mapping = mmap.mmap(attachment, capacity, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(attachment)
    return memoryview(mapping)


def connect(
    socket_path: str | None = None,
    *,
    name: str | None = None,
    importance: int = 0,
    state: AgentState | str = AgentState.ACTIVE,
    autostart: bool | None = None,
    timeout: float | None = None,
    observer: bool = False,
    profile_allocs: bool | int | None = None,
    open: Sequence[str] = (),
    trim_on_idle: bool | None = None,
) -> Client:
    """Connect to the daemon (starting one on first use when no socket path was given).

    An explicit ``socket_path`` turns autostart off unless ``autostart=True``.
    ``open``: published names to open in the handshake (``client.opened[name]`` is the handle);
    their content comes with the handshake's reply (mapped, zero-copy), so the first
    ``read``/``views`` of each asks the daemon nothing: an agent gets its shared system prompt
    in one round trip. Name there what the agent reads at once: each name's mapping and views
    are made during ``connect`` (``open()`` later costs a round trip of its own).
    ``observer``: read statistics only, registering no agent. ``profile_allocs``: sample the
    caller's stack at ``alloc_smu`` (True: every call; N: one in N; None: as
    ``AGENTMEM_PROFILE_ALLOCS`` says). ``trim_on_idle``: give the process's free heap back
    when the agent reports itself idle or paused (None: as ``AGENTMEM_TRIM_ON_IDLE`` says,
    on by default).
    Raises ``DaemonUnavailable`` when no daemon answers (and none could be started).
    """
    every = _profile_every(profile_allocs)
    path = socket_path or default_socket_path()
    if autostart is None:
        autostart = socket_path is None
    try:
        transport = UnixSocketTransport(path, timeout=timeout)
    except DaemonUnavailable:
        if not autostart:
            raise
        from agentmem.client.autostart import start_daemon

        start_daemon(path)
        transport = UnixSocketTransport(path, timeout=timeout)

    def reconnect() -> Transport:
        try:
            return UnixSocketTransport(path, timeout=timeout)
        except DaemonUnavailable:
            if not autostart:
                raise
            from agentmem.client.autostart import start_daemon

            start_daemon(path)
            return UnixSocketTransport(path, timeout=timeout)

    try:
        return Client(
            transport,
            name=name,
            importance=importance,
            state=state,
            reconnect=reconnect,
            observer=observer,
            profile_allocs=every,
            open=open,
            trim_on_idle=_trim_on_idle() if trim_on_idle is None else trim_on_idle,
        )
    except BaseException:
        transport.close()
        raise


def _profile_every(profile_allocs: bool | int | None) -> int:
    """``connect``'s ``profile_allocs`` as a sampling period N (0: off)."""
    if profile_allocs is None:
        from agentmem.config import profile_allocs as from_env

        return from_env()
    if isinstance(profile_allocs, bool):
        return int(profile_allocs)
    if profile_allocs < 0:
        raise InvalidArgument("profile_allocs must be True, False or N >= 0")
    return profile_allocs
