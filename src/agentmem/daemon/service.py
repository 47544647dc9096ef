"""Request handlers: the daemon's operations over its stores, with no socket in sight.

A :class:`Session` is one connection: its agent, the handles it owns and the segments it has
mapped. Handles are the store's, but a session may use only those in its own table; any other
number, guessed or another agent's, gets the same ``UnknownHandle`` as a released one.

Reads of small content answer inline. Larger hot content answers with extents (segment id,
offset, length) and, for segments the session has not mapped yet, the segment's fd sealed for
sharing: the client maps it read-only once and reads every later extent of it with no copy and
no daemon round trip for the bytes.

Both the socket server and the in-process transport call :meth:`Service.handle`; each decides
how a reply's segments travel (fds over ``SCM_RIGHTS``, or read-only views in-process).
"""

from __future__ import annotations

import array
import dataclasses
import fcntl
import logging
import mmap
import os
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Final

from agentmem import stats as wire_stats
from agentmem.config import Config
from agentmem.daemon import observe, profile
from agentmem.daemon.gcclock import GcClock
from agentmem.errors import (
    AgentmemError,
    InvalidArgument,
    PermissionDenied,
    ProtocolError,
    TooLarge,
    UnknownAgent,
    UnknownHandle,
)
from agentmem.ids import Handle
from agentmem.protocol import messages as m
from agentmem.protocol.fdpass import MAX_FDS_PER_FRAME
from agentmem.states import SMUType
from agentmem.store import Agent, Store, layout
from agentmem.store.segments import Segment
from agentmem.store.steps import run_until

#: Content up to this size is answered inline. Above it, a mapping pays off: mapping a segment
#: once costs ~30 us (fd passing) and then every read of it is a reply of a few dozen bytes,
#: while 16 KiB inline costs a copy on each side. Conversation messages (median ~1 KiB) stay
#: inline, so an agent that only chats maps nothing.
INLINE_MAX: Final = 16 << 10

#: Content that may not be mapped (private chunks sharing segments with others) is copied inline
#: up to this size, and into a one-off sealed memfd above it (a frame holds at most 16 MiB).
COPY_INLINE_MAX: Final = 8 << 20

#: A ``messages`` reply with ``views`` copies the messages the reader may not map (a forked
#: prefix, content other conversations hold too) inline up to this many bytes, and above it
#: into a one-off sealed memfd named by ``COPY_SEGMENT_ID``: the client maps it for the call
#: and unmaps it with the views, instead of receiving a frame of megabytes into its heap and
#: copying each message out of it (the heap such copies leave behind stays with the process).
COPY_VIEWS_INLINE_MAX: Final = 64 << 10
#: The segment id of a reply's one-off copy segment (real segment ids are >= 0).
COPY_SEGMENT_ID: Final = -1

#: Most message bytes one ``messages`` reply carries; the client asks again from ``next``.
MESSAGES_REPLY_BYTES: Final = 8 << 20
#: Messages a ``messages`` reply with ``views`` covers at most: its ``sizes`` list is ~3 bytes
#: a message on the wire (a 30 MB history of 15,000 messages in one reply of ~45 KB).
MESSAGE_VIEWS_COUNT: Final = 1 << 16

#: Seals a client must have put on a memfd it passes with ``alloc_smu``: otherwise it could
#: change the bytes between the daemon hashing them and copying them (the stored bytes would no
#: longer match their id).
_REQUIRED_SEALS: Final = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW

_MAX_OP: Final = m.MAX_OP_NAME

log = logging.getLogger("agentmem.daemon")

#: Wire labels -> SMU types, looked up before ``SMUType.parse`` (~1 us: enum name lookups).
_SMU_TYPES: Final[dict[str, SMUType]] = {t.label: t for t in SMUType}


class Reply:
    """What :meth:`Service.handle` returns: the reply body and the segments whose fds ride
    with it.

    ``transient`` segments (a subset of ``segments``) exist for this reply only: the transport
    closes them once their fds are on their way. ``sync``: the request wrote the journal in
    strict mode, so the reply may go only after :meth:`Service.sync`. A plain slotted class
    with shared empty tuples as defaults: built for every request, it must cost no lists.
    """

    __slots__ = ("body", "segments", "sync", "transient")

    def __init__(
        self,
        body: dict[str, object],
        segments: Sequence[Segment] = (),
        transient: Sequence[Segment] = (),
        sync: bool = False,
    ) -> None:
        self.body = body
        self.segments = segments
        self.transient = transient
        self.sync = sync


#: Seconds of a deferred reply's walk run at a time, between the requests of other
#: connections (and of the in-process transport's other threads): each waits about this long
#: for a walk in progress instead of its whole length (370 ms for 300,000 messages, 2.8 s at
#: 100 seed agents). A slice costs the loop one more poll (~10 us): 1 % of the walk.
DEFERRED_SLICE: Final = 0.001


class Deferred(Reply):
    """A reply that takes work in steps (statistics of a whole domain, a history promoted):
    the server calls :meth:`advance` between requests until it returns True, then sends
    ``body``; other connections are served meanwhile (``daemon/server.py``). ``steps`` yields
    after each step and returns its result, which ``finish`` turns into the reply's ``ok``
    (or into a whole :class:`Reply`, whose segments then ride with this one)."""

    __slots__ = ("_finish", "_steps")

    def __init__(self, steps: Generator[None, None, Any], finish: Callable[[Any], object]) -> None:
        super().__init__({})
        self._steps = steps
        self._finish = finish

    def advance(self, budget: float) -> bool:
        """Run steps for about ``budget`` seconds (at least one); True once the reply is
        complete: its result, or the error the work raised (a bug is logged and answered as
        the base error, as the server does for a handler)."""
        try:
            ended, value = run_until(self._steps, time.perf_counter() + budget)
            if not ended:
                return False
            result = self._finish(value)
            if result.__class__ is Reply:  # a reply with segments: theirs ride with it
                inner: Reply = result
                self.body["ok"] = inner.body["ok"]
                self.segments, self.transient = inner.segments, inner.transient
            else:
                self.body["ok"] = result
        except AgentmemError as exc:
            self._fail(exc)
        except Exception:
            log.error("internal error in a deferred reply:\n%s", traceback.format_exc())
            self._fail(AgentmemError("internal error in the daemon"))
        return True

    def _fail(self, exc: AgentmemError) -> None:
        """The error reply instead, still telling the client of the segments retired."""
        retired = self.body.get("retired")
        self.body = m.reply_error(_ident(self.body), exc)
        if retired:
            self.body["retired"] = retired

    def cancel(self) -> None:
        """Stop the walk (its connection closed)."""
        self._steps.close()


def _ident(body: dict[str, object]) -> int:
    ident = body.get("id")
    return ident if isinstance(ident, int) else 0


class Session:
    """One connection's state. Refs belong to it and die with it (:meth:`Service.close`).

    An *observer* session (``hello`` with ``observer: true``: ``agentmem stats``, ``top``,
    ``flamegraph``) joins its uid's domain without registering an agent: it appears in no
    agent list and may only read statistics (:data:`OBSERVER_OPS`).
    """

    __slots__ = (
        "agent",
        "closed",
        "domain",
        "handles",
        "mapped",
        "observer",
        "pid",
        "retired",
        "uid",
    )

    def __init__(self, pid: int, uid: int) -> None:
        self.pid = pid
        self.uid = uid
        self.agent: Agent | None = None
        self.domain: Domain | None = None
        self.observer = False
        self.closed = False
        #: Handles this session may use.
        self.handles: set[int] = set()
        #: Segment ids whose fd this session has received.
        self.mapped: set[int] = set()
        #: Segment ids retired since the last reply (the client drops its mappings).
        self.retired: list[int] = []


class Domain:
    """One trust boundary: a store and the sessions of its uid.

    With a state directory, the domain's journal and packs live in ``uid-<uid>`` under it,
    and conversations of an earlier run that crashed are restored on creation.
    """

    def __init__(self, uid: int, config: Config, state_dir: str | None = None) -> None:
        self.uid = uid
        self.store = Store(
            config, state_dir=None if state_dir is None else os.path.join(state_dir, f"uid-{uid}")
        )
        self.sessions: dict[str, Session] = {}  # by agent name
        #: Open observer sessions (not in ``sessions``: they have no agent).
        self.observers = 0
        #: Bytes allocated per client call stack, for clients that profile.
        self.profile = profile.AllocProfile()
        self.store.hot.on_retire.append(self._retired)

    def _retired(self, seg: Segment) -> None:
        for session in self.sessions.values():
            if seg.seg_id in session.mapped:
                session.mapped.discard(seg.seg_id)
                session.retired.append(seg.seg_id)


Handler = Callable[["Service", Session, dict[str, object], tuple[int, ...]], object]
"""An operation: returns its result (the reply's ``ok``), or a :class:`Reply` whose body is
``{"ok": result}`` when segments ride with it."""


class Service:
    """The daemon's operations. Not thread-safe: one event loop calls it."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        allowed_uids: Iterable[int] | None = None,
        state_dir: str | None = None,
    ):
        """``state_dir``: where each domain keeps its journal and cold-tier packs (None: in
        RAM only, no durability). Domains that have one there are restored at once."""
        self.config = config if config is not None else Config()
        self.state_dir = state_dir
        #: uids that may connect; None: only the daemon's own.
        self.allowed_uids = frozenset(allowed_uids) if allowed_uids is not None else None
        self.domains: dict[int, Domain] = {}
        self.requests = 0
        self.errors = 0
        #: CPU seconds of the maintenance ticks (tiering passes) and of the statistics the
        #: daemon publishes each second (the server's loop measures both).
        #: Dictionaries trained on a thread of their own (the daemon; see ``WarmTier``).
        self.background_training = False
        self.maintenance_cpu_seconds = 0.0
        self.statistics_cpu_seconds = 0.0
        #: Open sessions (connections), observers included.
        self.connections = 0
        #: ``time.monotonic()`` at start, for the uptime in statistics.
        self.started = time.monotonic()
        #: Bytes the maintenance ticks moved between tiers; their churn (those and the warm
        #: frame bytes dropped) when the heap was last given back, and how often it was
        #: (``maintenance.tick``).
        self.moved_bytes = 0
        self.churn_at_trim = 0
        self.heap_trims = 0
        #: ``codec.codec_uses()`` at the last maintenance tick, and ticks since it changed.
        self.codec_uses_seen = 0
        self.codec_idle_ticks = 0
        #: Times the codec's contexts and digested dictionaries were freed while idle.
        self.codec_releases = 0
        #: Whether the last maintenance pass left work due (the loop runs the next one soon).
        self.maintenance_backlog = False
        #: The once-a-second statistics (set by the daemon; None in-process).
        self.observer: observe.Observer | None = None
        #: The daemon process's garbage-collection clock (set by the daemon; None in-process).
        self.gc_clock: GcClock | None = None
        if state_dir is not None:
            # Restore every domain an earlier run left a journal for, before anyone connects:
            # their orphaned conversations must be there when their agents come back.
            for name in sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else ():
                if name.startswith("uid-") and name[4:].isdigit():
                    self.domain(int(name[4:]))

    def domain(self, uid: int) -> Domain:
        """The domain of ``uid``, created (and restored from the state directory) on first use."""
        domain = self.domains.get(uid)
        if domain is None:
            domain = self.domains[uid] = Domain(uid, self.config, self.state_dir)
            domain.store.warm.background_training = self.background_training
        return domain

    def sync(self) -> None:
        """Make every domain's journaled changes durable (strict mode, before replies)."""
        for domain in self.domains.values():
            domain.store.sync()

    # --- sessions --------------------------------------------------------------------------

    def open(self, pid: int, uid: int) -> Session:
        """A session for a peer the kernel identified; ``PermissionDenied`` for a foreign uid."""
        allowed = self.allowed_uids if self.allowed_uids is not None else {os.getuid()}
        if uid not in allowed:
            raise PermissionDenied(f"uid {uid} may not use this daemon")
        self.connections += 1
        return Session(pid, uid)

    def close(self, session: Session) -> None:
        """The connection ended: release every handle it held and forget its agent.
        Idempotent."""
        if not session.closed:
            session.closed = True
            self.connections -= 1
        domain, agent = session.domain, session.agent
        if session.observer and domain is not None:
            session.observer = False
            domain.observers -= 1
        if domain is None or agent is None:
            return
        # Every handle in the session's table belongs to its agent (shares to it included).
        domain.store.unregister_agent(agent)
        session.handles.clear()
        domain.sessions.pop(agent.name, None)
        session.agent = None

    def close_all(self) -> None:
        """Shut down: close every store."""
        for domain in self.domains.values():
            domain.store.close()
        self.domains.clear()

    # --- dispatch --------------------------------------------------------------------------

    def handle(self, session: Session, body: dict[str, object], fds: tuple[int, ...]) -> Reply:
        """Serve one request. Returns the reply; raises ``ProtocolError`` when the connection
        must close. Takes ownership of ``fds`` (closed before returning or raising)."""
        # The dispatch inline, not a call: a try costs nothing in 3.11 until it raises.
        try:
            ident = body.get("id")
            op = body.get("op")
            # parse_request's checks, as cheap as they get, for the request every client sends;
            # anything else goes through parse_request itself, which raises the precise error.
            if type(ident) is not int or type(op) is not str or not 0 < len(op) <= _MAX_OP:
                parsed = self._parse(session, body)
                if parsed.__class__ is Reply:
                    return parsed
                ident, op = parsed  # type: ignore[misc]
            self.requests += 1
            domain = session.domain
            # The journal of the session's domain (of its uid's, for the hello that joins it).
            known = domain if domain is not None else self.domains.get(session.uid)
            journal = known.store.journal if known is not None else None
            written = journal.size if journal is not None else -1
            try:
                if domain is None:
                    if op != m.OP_HELLO:
                        raise ProtocolError(f"expected {m.OP_HELLO!r} first, got {op!r:.80}")
                    result = _hello(self, session, body, fds)
                    domain = session.domain
                else:
                    handler = HANDLERS.get(op)
                    if handler is None:
                        raise InvalidArgument(f"unknown operation {op!r:.80}")
                    if session.observer and op not in OBSERVER_OPS:
                        raise PermissionDenied(f"an observer session may not {op!r:.80}")
                    result = handler(self, session, body, fds)
            except ProtocolError:
                raise
            except AgentmemError as exc:
                self.errors += 1
                return Reply(self._envelope(session, m.reply_error(ident, exc)))
            except Exception:
                self.errors += 1
                raise  # a bug: the server logs it and answers with the base error
            if result.__class__ is Reply:
                reply: Reply = result
                reply.body = {"id": ident, "ok": reply.body["ok"]}
            elif result.__class__ is Deferred:
                reply = result
                reply.body = {"id": ident, "ok": None}
            else:
                reply = Reply({"id": ident, "ok": result})
            if session.retired:
                reply.body["retired"] = session.retired
                session.retired = []
            if journal is None and domain is not None:  # the hello created its domain
                journal = domain.store.journal
            # Only a request that wrote the journal waits for its sync (group commit): one that
            # wrote nothing acknowledges nothing, so it does not wait for others' records.
            if (
                journal is not None
                and journal.dirty
                and journal.durable_sync
                and journal.size != written
            ):
                reply.sync = True
            return reply
        finally:
            if fds:
                for fd in fds:
                    os.close(fd)

    def _parse(self, session: Session, body: dict[str, object]) -> tuple[int, str] | Reply:
        """``(id, op)`` of a request the fast check in :meth:`handle` declined, or the error
        reply to a good id with a bad op; ``ProtocolError`` when there is no id to reply to."""
        try:
            return m.parse_request(body)
        except ProtocolError:
            raise
        except InvalidArgument as exc:  # a good id, a bad op: answered like any bad argument
            self.requests += 1
            self.errors += 1
            good_id = body["id"]
            assert isinstance(good_id, int)
            return Reply(self._envelope(session, m.reply_error(good_id, exc)))
        except Exception as exc:
            raise ProtocolError(f"malformed request: {exc}") from exc

    @staticmethod
    def _envelope(session: Session, reply: dict[str, object]) -> dict[str, object]:
        if session.retired:
            reply["retired"] = session.retired
            session.retired = []
        return reply


# --- helpers ------------------------------------------------------------------------------


def _domain(session: Session) -> Domain:
    assert session.domain is not None
    return session.domain


def _own(session: Session, msg: dict[str, object], key: str = "handle") -> Handle:
    h = msg.get(key)
    if h.__class__ is not int:
        h = m.require(msg, key, int)  # raises the precise error (or takes an int subclass)
    if h not in session.handles:
        if not 0 <= h < 1 << 64:  # only in-process: msgpack carries no such int
            raise InvalidArgument(m.OUT_OF_RANGE)
        raise UnknownHandle(f"unknown handle {h}")
    return h  # type: ignore[return-value]  # an int in the table: a Handle


def _no_fds(fds: tuple[int, ...]) -> None:
    if fds:
        raise InvalidArgument("this operation takes no file descriptors")


def _messages(msg: dict[str, object], key: str) -> list[bytes]:
    raw = m.require(msg, key, list)
    for item in raw:
        if not isinstance(item, bytes | str):
            raise InvalidArgument(f"{key!r} must be a list of bytes or str")
    return raw


# --- operations ---------------------------------------------------------------------------


def _hello(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    name = m.check_hello(msg)
    importance = m.optional(msg, "importance", int, 0)
    state = m.optional(msg, "state", str, "active")
    observer = m.optional(msg, "observer", bool, False)
    domain = svc.domain(session.uid)
    if observer:
        session.observer, session.domain = True, domain
        domain.observers += 1
    opened: dict[str, int] = {}
    restored: list[int] = []
    if not observer:
        names = m.optional(msg, "open", list, [])
        if len(names) > 64 or not all(isinstance(n, str) for n in names):
            raise InvalidArgument("'open' is a list of at most 64 published names")
        store = domain.store
        agent = store.agents.get(name)
        adopted = agent is not None and agent.orphaned is not None and name not in domain.sessions
        if agent is not None and adopted:
            # Restored from the journal after a crash: this connection takes over its handles.
            store.set_state(agent, state, importance)
            agent.pid, agent.orphaned = session.pid, None
            restored = sorted(h for h, r in store.refs.items() if r.agent is agent)
        else:
            agent = store.register_agent(name, pid=session.pid, state=state, importance=importance)
        try:
            # Published content opened in the handshake: an agent starts with its system prompt
            # and tools in one round trip (spawn = connect + hello + read).
            for wanted in names:
                opened[wanted] = store.open(wanted, agent)
        except BaseException:
            for h in opened.values():
                store.release(Handle(h))
            if adopted:
                agent.orphaned = store.clock()  # its conversations wait for the next hello
            else:
                store.unregister_agent(agent)
            raise
        session.agent, session.domain = agent, domain
        domain.sessions[name] = session
        session.handles.update(opened.values())
        session.handles.update(restored)
    body: dict[str, object] = {
        "agent": name,
        "pid": session.pid,
        "uid": session.uid,
        "version": m.PROTOCOL_VERSION,
        "inline_max": INLINE_MAX,
        "opened": opened,
        "restored": restored,
    }
    if not opened or not m.optional(msg, "read", bool, False):
        return body
    # Spawn in one round trip: the opened content comes with the handshake, as ``read`` would
    # answer it, for as many names as one frame's fds allow (the client reads the rest).
    reads: dict[str, object] = {}
    segments: list[Segment] = []
    store = domain.store
    for wanted, h in opened.items():
        content = _content(session, store, Handle(h), MAX_FDS_PER_FRAME - len(segments))
        if content is not None:
            reads[wanted] = content[0]
            segments += content[1]
    body["reads"] = reads
    return Reply({"ok": body}, segments) if segments else body


def _adopt(session: Session, h: Handle) -> Handle:
    session.handles.add(h)
    return h


def _alloc_smu(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    store = _domain(session).store
    label = msg.get("type")
    smu_type = _SMU_TYPES.get(label) if type(label) is str else None  # a list is unhashable
    if smu_type is None:
        smu_type = SMUType.parse(label)
    agent = session.agent
    assert agent is not None
    sampled = profile.parse(msg) if "stack" in msg else None
    if smu_type is SMUType.CONVERSATION:
        _no_fds(fds)
        messages = _messages(msg, "messages")
        reply = _adopt(session, store.alloc_smu(smu_type, messages, agent))
        if sampled is not None:
            nbytes = sum(len(x.encode() if isinstance(x, str) else x) for x in messages)
            _domain(session).profile.add(sampled[0], nbytes, sampled[1])
        return reply
    if not fds:
        data = msg.get("data")
        if not isinstance(data, bytes | str):
            raise InvalidArgument("'data' must be bytes or str (or pass a sealed memfd)")
        reply = _adopt(session, store.alloc_smu(smu_type, data, agent))
        if sampled is not None:
            nbytes = len(data.encode() if isinstance(data, str) else data)
            _domain(session).profile.add(sampled[0], nbytes, sampled[1])
        return reply
    if len(fds) != 1:
        raise InvalidArgument("alloc_smu takes at most one memfd")
    size = m.require(msg, "size", int)
    fd = fds[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        raise InvalidArgument("the passed fd is not a memfd") from None
    if seals & _REQUIRED_SEALS != _REQUIRED_SEALS:
        raise InvalidArgument("the memfd must be sealed against write, shrink and grow")
    actual = os.fstat(fd).st_size
    if size != actual or size < 0:
        raise InvalidArgument(f"'size' says {size} bytes, the memfd holds {actual}")
    if size > svc.config.max_smu_bytes:
        raise TooLarge(f"content of {size} bytes exceeds the {svc.config.max_smu_bytes}-byte limit")
    if size == 0:
        reply = _adopt(session, store.alloc_smu(smu_type, b"", agent))
    else:
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as mapping:
            view = memoryview(mapping)
            try:
                reply = _adopt(session, store.alloc_smu(smu_type, view, agent))
            finally:
                view.release()
    if sampled is not None:
        _domain(session).profile.add(sampled[0], size, sampled[1])
    return reply


def _share_content(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    h = _own(session, msg)
    target_name = m.require(msg, "target", str)
    domain = _domain(session)
    target = domain.sessions.get(target_name)
    if target is None or target.agent is None:
        raise UnknownAgent(f"no connected agent named {target_name!r} in this domain")
    new = domain.store.share_content(h, target.agent)
    target.handles.add(new)
    return new


def _mark_hot(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    _domain(session).store.mark_hot(_own(session, msg), m.optional(msg, "hot", bool, True))
    return None


def _get_stats(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    agent = msg.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise InvalidArgument("'agent' must be a name")
    with_daemon = m.optional(msg, "daemon", bool, False)
    recent = m.optional(msg, "recent", bool, False)
    snap = svc.observer.snapshot if recent and svc.observer is not None else None
    if agent is None and snap is not None and session.uid in snap.domains:
        # The last tick's statistics: nothing to compute (``top`` asks every second).
        cached = snap.domains[session.uid]
        if not with_daemon:
            cached = dataclasses.replace(cached, daemon=None)
        return wire_stats.to_wire(cached)
    domain = _domain(session)
    if agent is None:
        # A walk of every chunk reference (seconds for millions of messages): in steps, so
        # the daemon serves every other request while it goes on.
        def finish(stats: wire_stats.StoreStats) -> object:
            if with_daemon:
                stats = dataclasses.replace(stats, daemon=observe.daemon_stats(svc, domain))
            return wire_stats.to_wire(stats)

        return Deferred(domain.store.get_stats_steps(), finish)
    # One agent's: its own records only, but an agent of many handles or a long history
    # takes milliseconds; in steps too.
    return Deferred(domain.store.get_stats_steps(agent), wire_stats.to_wire)


def _alloc_profile(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    domain = _domain(session)
    result = domain.profile.to_wire()
    if m.optional(msg, "reset", bool, False):
        domain.profile = profile.AllocProfile()
    return result


def _read(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    content = _content(session, _domain(session).store, _own(session, msg))
    assert content is not None  # no fd limit asked: every read has an answer
    body, segments = content
    if not segments:
        return body
    if "copy" in body:
        return Reply({"ok": body}, segments, segments)  # the copy's fd goes out, then it closes
    return Reply({"ok": body}, segments)


def _content(
    session: Session, store: Store, h: Handle, fd_room: int | None = None
) -> tuple[dict[str, object], list[Segment]] | None:
    """``read``'s result for ``h``: the ``ok`` body and the segments whose fds go with it (those
    this session maps for the first time, or a one-off copy of what it may not map).

    ``fd_room`` (the handshake's reads): when given, an answer that would need more fds than
    that, or a copy of content the session may not map (inline or in a memfd: up to 8 MiB each,
    more than a frame holds for 64 names), is None instead, and marks nothing as mapped by the
    session (the client asks with ``read`` later).
    """
    size = store.size(h)
    if size <= INLINE_MAX:
        return {"data": bytes(store.read(h))}, []
    extents = store.extents(h)
    if not extents or not _mappable(extents):
        # A mapping would expose bytes the reader may not read: hand over a copy.
        if fd_room is not None:
            return None
        if size <= COPY_INLINE_MAX:
            return {"data": bytes(store.read(h))}, []
        copy = Segment(-1, size, pool="private", exclusive=True)
        for view in store.views(h):
            copy.append(view)
        copy.seal()
        return {"copy": [copy.capacity, size]}, [copy]
    new: list[Segment] = []
    for seg, _, _ in extents:
        if seg.seg_id not in session.mapped and seg not in new:
            new.append(seg)
    if fd_room is not None and len(new) > fd_room:
        return None
    for seg in new:
        seg.share()
        session.mapped.add(seg.seg_id)
    return {
        "extents": [[seg.seg_id, off, n] for seg, off, n in extents],
        "map": [[seg.seg_id, seg.capacity] for seg in new],
    }, new


def _mappable(extents: tuple[tuple[Segment, int, int], ...]) -> bool:
    """May a reader of these extents map their segments? Yes if every segment is in the shared
    pool (prompts and tool definitions), or the content is alone in a segment of its own."""
    if all(seg.pool == "shared" for seg, _, _ in extents):
        return True
    if len(extents) != 1:
        return False
    seg, off, n = extents[0]
    return seg.exclusive and off == 0 and n == seg.used


def _release(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    h = _own(session, msg)
    _domain(session).store.release(h)
    session.handles.discard(h)
    return None


def _set_state(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    state = msg.get("state")
    importance = msg.get("importance")
    if state is not None and not isinstance(state, str):
        raise InvalidArgument("'state' must be active, paused or idle")
    if importance is not None and (not isinstance(importance, int) or isinstance(importance, bool)):
        raise InvalidArgument("'importance' must be an int")
    assert session.agent is not None
    _domain(session).store.set_state(session.agent, state, importance)
    return None


def _append(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    h = _own(session, msg)
    store = _domain(session).store
    if "messages" in msg:
        store.extend(h, _messages(msg, "messages"))
    else:
        message = msg.get("message")
        if not isinstance(message, bytes | str):
            raise InvalidArgument("'message' must be bytes or str")
        store.append(h, message)
    return store.length(h)


def _fork(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    return _adopt(session, _domain(session).store.fork(_own(session, msg)))


def _messages_op(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    h = _own(session, msg)
    store = _domain(session).store
    length = store.length(h)
    start = m.optional(msg, "start", int, 0)
    stop = msg.get("stop")
    if stop is not None and (not isinstance(stop, int) or isinstance(stop, bool)):
        raise InvalidArgument("'stop' must be an int or absent")
    start, stop, _ = slice(start, stop).indices(length)
    views = m.optional(msg, "views", bool, False)
    packed = views and m.optional(msg, "packed", bool, False)

    if views:
        # The range listed once: promoted in steps if demoted (a 30 MB history: ~75 ms),
        # between other requests, then answered as extents.
        extents = store.message_extents_steps(h, start, min(stop, start + MESSAGE_VIEWS_COUNT))

        def views_of(got: layout.MessageExtents) -> Reply:
            return _message_views(
                session, store, h, got, start=start, stop=stop, length=length, packed=packed
            )

        try:
            next(extents)
        except StopIteration as done:  # all hot: answered now
            return views_of(done.value)
        return Deferred(extents, views_of)

    def answer(_: object = None) -> object:
        out: list[bytes] = []
        total = 0
        pos = start
        for view in store.messages(h, start, stop):
            if out and total + len(view) > MESSAGES_REPLY_BYTES:
                break
            out.append(bytes(view))
            total += len(view)
            pos += 1
        return {"messages": out, "next": pos if pos < stop else None, "length": length}

    # Demoted messages come back in steps, between other requests.
    promotion = store.promotion_steps(h, start, stop)
    return answer() if promotion is None else Deferred(promotion, answer)


def _message_views(
    session: Session,
    store: Store,
    h: Handle,
    got: layout.MessageExtents,
    *,
    start: int,
    stop: int,
    length: int,
    packed: bool = False,
) -> Reply:
    """``messages`` with ``views``: the range (``got``, from ``Store.message_extents_steps``)
    as extents of the handle's own conversation segments and the bytes of the messages that
    lie elsewhere. A reply covers at most
    MESSAGE_VIEWS_COUNT messages and MESSAGES_REPLY_BYTES of inline bytes; ``next`` says where
    to ask again.

    Unlike ``read``'s, these segments' fds come with every reply that names them and the
    client keeps no mapping beyond the views it returns: an agent reads its history once a
    turn and then sits idle, and a mapping it kept would hold the segment's pages after the
    daemon demoted the conversation and retired the segment (it learns of retirements only
    in its next reply): measured, 25 idle seed-profile agents held 21 MiB each that way."""
    sizes = got.sizes
    pieces: list[object] = []  # extents as wire lists; the messages to copy as memoryviews
    segs: list[Segment] = []  # the segments the pieces name, in order of first use
    inline = 0
    count = 0  # messages wholly in ``pieces``
    done = 0  # bytes of message ``count`` in ``pieces`` so far (a message may span extents)
    kept = (0, 0, 0, 0)  # (pieces, segments, messages, copied bytes) at the last boundary
    for piece in got.pieces:
        if isinstance(piece, memoryview):  # one whole message (the empty ones too)
            if inline and inline + len(piece) > MESSAGES_REPLY_BYTES:
                break  # the rest next time
            inline += len(piece)
            pieces.append(piece)
            count += 1
        else:  # bytes of one or more non-empty messages
            seg, off, n = piece
            if not store.may_map(h, seg):  # the store's contract; a bug if it ever fails
                raise AssertionError(f"segment {seg.seg_id} is not the handle's to map")
            if seg not in segs:
                if len(segs) == MAX_FDS_PER_FRAME - 1:
                    break  # one fd a segment (and one for the copies): the rest next time
                segs.append(seg)
            pieces.append([seg.seg_id, off, n])
            done += n
            while done and done >= sizes[count]:
                done -= sizes[count]
                count += 1
        if not done:
            kept = (len(pieces), len(segs), count, inline)
    # Stop at a message boundary: a message split over two extents goes whole or not at all.
    npieces, nsegs, count, inline = kept
    if not count and sizes:  # never: a message spans at most two segments
        raise TooLarge(f"message {start} spans more segments than a frame carries fds")
    del pieces[npieces:], segs[nsegs:]
    for seg in segs:
        seg.share()
    transient: list[Segment] = []
    if inline > COPY_VIEWS_INLINE_MAX:
        copy = _copy_segment(pieces, inline)
        segs.append(copy)
        transient.append(copy)
    else:
        pieces = [bytes(p) if isinstance(p, memoryview) else p for p in pieces]
    pos = start + count
    ok: dict[str, object] = {
        # ``packed``: one native uint32 a message, no int object each on either side.
        "sizes": array.array("I", sizes[:count]).tobytes() if packed else sizes[:count],
        "pieces": pieces,
        "map": [[seg.seg_id, seg.capacity] for seg in segs],
        "next": pos if pos < stop else None,
        "length": length,
    }
    if packed and (wire := _pack_pieces(pieces)) is not None:
        ok["pieces"], ok["inline"] = wire
    return Reply({"ok": ok}, segs, transient)


def _pack_pieces(pieces: list[object]) -> tuple[bytes, list[bytes]] | None:
    """``pieces`` as the packed wire form (``messages.PACKED_COPY``): uint32 triples and the
    inline messages apart; None if a value does not fit 32 bits (then they go as lists)."""
    words = array.array("I")
    inline: list[bytes] = []
    try:
        for piece in pieces:
            if isinstance(piece, bytes):
                inline.append(piece)
                words.extend((m.PACKED_INLINE, 0, len(piece)))
                continue
            assert isinstance(piece, list)
            seg_id, off, n = piece
            if seg_id == COPY_SEGMENT_ID:
                seg_id = m.PACKED_COPY
            elif seg_id >= m.PACKED_INLINE:
                return None
            words.extend((seg_id, off, n))
    except OverflowError:
        return None
    return words.tobytes(), inline


def _copy_segment(pieces: list[object], size: int) -> Segment:
    """Copy the messages of ``pieces`` that are memoryviews into a sealed one-off segment
    (``COPY_SEGMENT_ID``) and put its extents in their place (consecutive copies: one extent;
    empty messages stay empty bytes, a piece of their own)."""
    copy = Segment(COPY_SEGMENT_ID, size, pool="private", exclusive=True)
    last: list[int] | None = None  # the copy extent the next copy may extend
    for i, piece in enumerate(pieces):
        if not isinstance(piece, memoryview):
            last = None
            continue
        n = len(piece)
        if not n:
            pieces[i] = b""
            last = None
            continue
        off = copy.append(piece)
        if last is not None and last[1] + last[2] == off:
            last[2] += n
            pieces[i] = None
        else:
            last = pieces[i] = [COPY_SEGMENT_ID, off, n]
    pieces[:] = [p for p in pieces if p is not None]
    copy.seal()
    return copy


def _length(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    return _domain(session).store.length(_own(session, msg))


def _demote(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    return _domain(session).store.demote(_own(session, msg))


def _handles(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    store = _domain(session).store
    return [
        {"handle": h, "type": store.smu_type(Handle(h)).label, "size": store.size(Handle(h))}
        for h in sorted(session.handles)
    ]


def _publish(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    _domain(session).store.publish(_own(session, msg), m.require(msg, "name", str))
    return None


def _unpublish(
    svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]
) -> object:
    _no_fds(fds)
    _domain(session).store.unpublish(m.require(msg, "name", str))
    return None


def _open(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    assert session.agent is not None
    return _adopt(session, _domain(session).store.open(m.require(msg, "name", str), session.agent))


def _check(svc: Service, session: Session, msg: dict[str, object], fds: tuple[int, ...]) -> object:
    _no_fds(fds)
    from agentmem.daemon.checkup import check_store

    return check_store(_domain(session).store, repair=m.optional(msg, "repair", bool, False))


HANDLERS: Final[dict[str, Handler]] = {
    m.OP_ALLOC_SMU: _alloc_smu,
    m.OP_SHARE_CONTENT: _share_content,
    m.OP_MARK_HOT: _mark_hot,
    m.OP_GET_STATS: _get_stats,
    m.OP_READ: _read,
    m.OP_RELEASE: _release,
    m.OP_SET_STATE: _set_state,
    m.OP_APPEND: _append,
    m.OP_FORK: _fork,
    m.OP_MESSAGES: _messages_op,
    "length": _length,
    "demote": _demote,
    "handles": _handles,
    m.OP_ALLOC_PROFILE: _alloc_profile,
    "publish": _publish,
    "unpublish": _unpublish,
    "open": _open,
    "check": _check,
}
"""Operation name -> handler. ``hello`` is handled before a session has an agent."""

#: What an observer session may do: read statistics, nothing that needs an agent.
OBSERVER_OPS: Final = frozenset({m.OP_GET_STATS, m.OP_ALLOC_PROFILE, "check"})
