"""The daemon's event loop: one thread, epoll, non-blocking sockets.

Why not asyncio: a Unix-socket round trip costs ~140 us with asyncio streams and ~28 us with
uvloop protocols here (DESIGN.md), and neither hands over ``SCM_RIGHTS`` fds through its
transports. A plain epoll loop calling ``recvmsg``/``sendmsg`` itself passes fds natively and
measured at the raw echo's cost (``agentmem bench daemon`` reports both).

Every peer is identified by ``SO_PEERCRED`` on accept; a uid the service does not allow is
closed before it can send a byte. A request that breaks the protocol closes that connection
only; a bug in a handler answers that request with the base error and is logged; nothing a
client sends can stop the loop.
"""

from __future__ import annotations

import array
import contextlib
import errno
import logging
import os
import select
import signal
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from agentmem.daemon import maintenance
from agentmem.daemon.service import DEFERRED_SLICE, Deferred, Reply, Service, Session
from agentmem.errors import AgentmemError, DiskFull, PermissionDenied, ProtocolError
from agentmem.protocol import fdpass, framing
from agentmem.protocol import messages as m
from agentmem.protocol.fdpass import RECV_BYTES as _RECV_BYTES
from agentmem.protocol.fdpass import recv_some

log = logging.getLogger("agentmem.daemon")

#: Most frames read from one connection per wakeup, so one busy client cannot starve others.
_READS_PER_WAKEUP: Final = 16
#: Bytes queued to a slow reader before the daemon stops reading its requests (backpressure).
_MAX_QUEUED: Final = 64 << 20
#: Seconds between attempts to accept again after running out of file descriptors, unless a
#: connection closes first (which resumes at once). Caps the retries and their log lines.
_ACCEPT_RETRY: Final = 1.0


EVENT_READ: Final = select.EPOLLIN
EVENT_WRITE: Final = select.EPOLLOUT
# Errors and hang-ups are reported as readable: the next recv then says what happened.
_READABLE: Final = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
_HANGUP: Final = select.EPOLLERR | select.EPOLLHUP


class _Poller:
    """``select.epoll`` keyed by fd, with the caller's object per fd: ``selectors`` does the
    same with a key object per event, ~1.5 us a wakeup more in this loop."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._data: dict[int, object] = {}

    def register(self, fileobj: socket.socket, events: int, data: object) -> None:
        fd = fileobj.fileno()
        self._epoll.register(fd, events)
        self._data[fd] = data

    def modify(self, fileobj: socket.socket, events: int, data: object) -> None:
        fd = fileobj.fileno()
        self._epoll.modify(fd, events)
        self._data[fd] = data

    def unregister(self, fileobj: socket.socket) -> None:
        fd = fileobj.fileno()
        if self._data.pop(fd, _MISSING) is _MISSING:
            raise KeyError(fd)
        self._epoll.unregister(fd)

    @property
    def data(self) -> dict[int, object]:
        """fd -> the object registered with it (the loop looks events up here itself)."""
        return self._data

    @property
    def poll(self) -> Callable[[float], list[tuple[int, int]]]:
        """``epoll.poll``: ``(fd, events)`` pairs ready within ``timeout`` seconds (-1: wait)."""
        return self._epoll.poll

    def select(self, timeout: float | None) -> list[tuple[object, int]]:
        data = self._data
        return [
            (data[fd], events)
            for fd, events in self._epoll.poll(-1 if timeout is None else timeout)
            if fd in data
        ]

    def close(self) -> None:
        self._epoll.close()
        self._data.clear()


_MISSING: Final = object()
#: The data registered with the wake-up socket (signals, :meth:`Server.stop`).
_WAKE: Final = object()


class Connection:
    """A client socket, its inbox and its unsent output."""

    __slots__ = (
        "blocked",
        "inbox",
        "out",
        "out_bytes",
        "reading",
        "session",
        "sock",
        "want_write",
    )

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.session = session
        self.inbox = fdpass.FdInbox()
        #: Unsent output: [remaining bytes of a frame, owned fds still to ride with it].
        self.out: deque[list[Any]] = deque()
        self.out_bytes = 0
        self.want_write = False
        #: False while too much output is queued: the socket is then not watched for reading
        #: (epoll is level-triggered: a readable socket left unread would wake the loop forever).
        self.reading = True
        #: While a deferred reply of this connection is being computed: the replies of its
        #: later requests, which go out after it, in order (None: nothing deferred).
        self.blocked: list[Reply] | None = None


class Server:
    """Serves a :class:`Service` on a listening Unix socket until :meth:`stop`."""

    def __init__(self, service: Service, listener: socket.socket) -> None:
        self.service = service
        self.listener = listener
        listener.setblocking(False)
        self.selector = _Poller()
        self.selector.register(listener, EVENT_READ, None)
        self.connections: dict[int, Connection] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, EVENT_READ, _WAKE)
        #: Set by :meth:`stop`, whenever it comes: a stop asked for before the loop starts
        #: (SIGTERM just after the handlers are installed) ends it at once.
        self._stopping = False
        #: When accepting resumes after running out of fds (None: accepting now).
        self._accept_paused_until: float | None = None
        self.accepted = 0
        self.refused = 0
        #: Called on each maintenance tick (about once a second), after ``maintenance.tick``.
        self.on_tick: list[Callable[[], object]] = []
        #: Replies waiting for the journal to be synced (group commit), in order, and the
        #: connections they belong to (later replies of those wait too, to keep order).
        self._held: list[tuple[Connection, Reply]] = []
        self._holding: set[Connection] = set()
        self.group_commits = 0
        #: One encoder (a reused msgpack packer) for every reply: the loop is one thread.
        self._encode = framing.Encoder().encode
        #: Deferred replies being computed, a slice of :attr:`job_slice` seconds each per turn
        #: of the loop, taking turns; the loop does not wait for events while there are any.
        self._jobs: deque[tuple[Connection, Deferred]] = deque()
        self.job_slice = DEFERRED_SLICE

    # --- control ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop cleanly (main thread only)."""
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler or another thread, before or
        while it runs)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def serve_forever(self) -> None:
        poll = self.selector.poll
        data_of = self.selector.data
        monotonic = time.monotonic
        read, flush, wake = self._read, self._flush, _WAKE
        next_tick = next_observe = monotonic() + maintenance.INTERVAL
        while not self._stopping:
            now = monotonic()
            # A backlog pass comes back within BACKLOG_INTERVAL, between the requests queued
            # meanwhile, but not before a deferred reply a client waits for (a promotion, a
            # walk): while one is in progress, maintenance runs once a second only, as the
            # statistics do.
            if now >= next_tick and (not self._jobs or now >= next_observe):
                observe = now >= next_observe
                self._tick(observe=observe)
                now = monotonic()
                if observe:
                    next_observe = now + maintenance.INTERVAL
                backlog = self.service.maintenance_backlog
                next_tick = now + (
                    maintenance.BACKLOG_INTERVAL if backlog else maintenance.INTERVAL
                )
            timeout = next_tick - now if not self._jobs else 0.0
            if self._accept_paused_until is not None:
                if self._accept_paused_until <= now:
                    self._resume_accepting()
                else:
                    timeout = min(timeout, self._accept_paused_until - now)
            for fd, events in poll(timeout):
                conn = data_of.get(fd, _MISSING)
                if conn.__class__ is Connection:
                    if events & EVENT_WRITE:
                        flush(conn)
                    if events & _HANGUP and not conn.reading:
                        self._drop(conn)  # replies queued to a peer that is gone
                    elif events & _READABLE and conn.reading and conn.sock.fileno() >= 0:
                        read(conn)
                elif conn is None:
                    self._accept()
                elif conn is wake:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
            if self._jobs:
                self._run_job()
            if self._held:
                self._release_held()
        self.close()

    def _run_job(self) -> None:
        """One slice of the oldest deferred reply's walk; send it (and what queued behind it
        on its connection) once complete, else let the next job have the next slice."""
        jobs = self._jobs
        conn, reply = jobs[0]
        if not reply.advance(self.job_slice):
            jobs.rotate(-1)
            return
        jobs.popleft()
        blocked, conn.blocked = conn.blocked or [], None
        self._queue(conn, _holding_fds(reply) if reply.segments else reply)
        for i, later in enumerate(blocked):
            if later.__class__ is Deferred and not later.advance(self.job_slice):
                conn.blocked = blocked[i + 1 :]
                jobs.append((conn, later))
                return
            self._queue(conn, later)

    def _queue(self, conn: Connection, reply: Reply) -> None:
        """Send a reply that waited behind a deferred one, behind any held replies of its
        connection (group commit) and after its own journal sync. Its fds are its own
        (``_holding_fds``): segments may have been retired while it waited."""
        if reply.sync or conn in self._holding:
            self._held.append((conn, reply))
            self._holding.add(conn)
            return
        self._send(conn, reply)
        for seg in reply.transient:
            seg.close()

    def _release_held(self) -> None:
        """Group commit: one journal sync for every durable request of this wakeup, then
        their replies (and any that queued behind them on the same connections)."""
        held, self._held = self._held, []
        self._holding.clear()
        failure: AgentmemError | None = None
        try:
            self.service.sync()
            self.group_commits += 1
        except OSError as exc:  # not durable: no acknowledgement may claim it is
            log.error("journal sync failed: %s", exc)
            failure = DiskFull(f"the journal could not be synced: {exc}")
        for conn, reply in held:
            out = reply
            if failure is not None and reply.sync:
                ident = reply.body.get("id")
                out = Reply(m.reply_error(ident if isinstance(ident, int) else 0, failure))
            if conn.sock.fileno() >= 0:
                self._send(conn, out)
            for seg in reply.transient:
                seg.close()

    def _tick(self, observe: bool = True) -> None:
        """Maintenance, then (``observe``) each ``on_tick`` callback; a failure is logged,
        never fatal."""
        service = self.service
        maintenance.run(service)
        t1 = time.process_time()
        if observe:
            for fn in self.on_tick:
                self._run(fn)
            service.statistics_cpu_seconds += time.process_time() - t1

    @staticmethod
    def _run(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.error("maintenance tick failed:\n%s", traceback.format_exc())

    def close(self) -> None:
        for conn in list(self.connections.values()):
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self.service.close_all()

    # --- connections -----------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    # The listener stays readable while connections wait: watched, it would
                    # wake the loop at once, forever. Stop watching it for a while.
                    log.error("out of file descriptors; not accepting for now")
                    self.selector.unregister(self.listener)
                    self._accept_paused_until = time.monotonic() + _ACCEPT_RETRY
                    return
                raise
            try:
                pid, uid, _gid = fdpass.peer_credentials(sock)
                session = self.service.open(pid, uid)
            except (OSError, PermissionDenied) as exc:
                self.refused += 1
                log.warning("refused a connection: %s", exc)
                sock.close()
                continue
            sock.setblocking(False)
            conn = Connection(sock, session)
            self.connections[sock.fileno()] = conn
            self.selector.register(sock, EVENT_READ, conn)
            self.accepted += 1

    def _resume_accepting(self) -> None:
        if self._accept_paused_until is not None:
            self._accept_paused_until = None
            self.selector.register(self.listener, EVENT_READ, None)

    def _drop(self, conn: Connection) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        self.connections.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn.sock)
        conn.inbox.close()
        if conn.blocked is not None:  # its deferred replies will never go out
            for later in conn.blocked:
                for seg in later.transient:
                    seg.close()
            conn.blocked = None
            for job in [j for j in self._jobs if j[0] is conn]:
                self._jobs.remove(job)
                job[1].cancel()
        for _, fds in conn.out:
            for extra in fds:
                with contextlib.suppress(OSError):
                    os.close(extra)
        conn.out.clear()
        conn.sock.close()
        self._resume_accepting()  # an fd is free again
        try:
            self.service.close(conn.session)
        except Exception:
            log.error("releasing a closed session failed:\n%s", traceback.format_exc())

    def _read(self, conn: Connection) -> None:
        sock, inbox, serve = conn.sock, conn.inbox, self._serve
        for _ in range(_READS_PER_WAKEUP):
            if conn.out_bytes > _MAX_QUEUED:
                self._watch(conn, write=True, read=False)  # until the client drains its replies
                return
            try:
                received, nbytes = recv_some(sock, inbox)
            except (BlockingIOError, InterruptedError):
                return
            except (EOFError, ProtocolError, OSError) as exc:
                if not isinstance(exc, EOFError):
                    log.info("closing connection of pid %d: %s", conn.session.pid, exc)
                self._drop(conn)
                return
            if len(received) == 1:  # the usual: one request per recvmsg
                if not serve(conn, received[0]):
                    return
            else:
                for i, item in enumerate(received):
                    if not serve(conn, item):
                        # The connection is gone: the fds of frames it will never serve are ours.
                        for unserved in received[i + 1 :]:
                            for fd in unserved.fds:
                                os.close(fd)
                        return
            if nbytes < _RECV_BYTES:
                return  # drained: epoll (level-triggered) wakes us when more arrives

    def _serve(self, conn: Connection, item: fdpass.Received) -> bool:
        frame, fds = item
        body = frame.body
        try:
            reply = self.service.handle(conn.session, body, fds)
        except ProtocolError as exc:
            log.info("protocol error from pid %d: %s", conn.session.pid, exc)
            ident = body.get("id")
            if isinstance(ident, int) and not isinstance(ident, bool):
                self._send(conn, Reply(m.reply_error(ident, exc)))
                self._flush(conn)
            self._drop(conn)
            return False
        except Exception:
            log.error("internal error serving %r:\n%s", body.get("op"), traceback.format_exc())
            ident = body.get("id")
            if not isinstance(ident, int) or isinstance(ident, bool):
                self._drop(conn)
                return False
            reply = Reply(m.reply_error(ident, AgentmemError("internal error in the daemon")))
        if conn.blocked is not None:  # behind a deferred reply of this connection: in order
            conn.blocked.append(_holding_fds(reply) if reply.segments else reply)
            return True
        if reply.__class__ is Deferred and not reply.advance(self.job_slice):
            conn.blocked = []
            self._jobs.append((conn, reply))
            return True
        if reply.sync or conn in self._holding:
            if reply.segments:
                reply = _holding_fds(reply)
            self._held.append((conn, reply))
            self._holding.add(conn)
            return True
        self._send(conn, reply)
        if reply.transient:
            for seg in reply.transient:
                seg.close()  # its fd went out (or was dup'ed into the queue)
        return conn.sock.fileno() >= 0

    # --- output ----------------------------------------------------------------------------

    def _send(self, conn: Connection, reply: Reply) -> None:
        """Send a reply now if the socket takes it, else queue the rest (fds dup'ed: they must
        ride with the frame's first byte, and the segment may be retired before then)."""
        segments = reply.segments
        fds = [seg.fd for seg in segments] if segments else []
        try:
            frame = self._encode(reply.body, fds=bool(fds))
        except AgentmemError as exc:  # a reply too large to frame: tell the client why
            ident = reply.body.get("id")
            frame = self._encode(m.reply_error(ident if isinstance(ident, int) else 0, exc))
            fds = []
        sent = 0
        if not conn.out:
            try:
                # The usual reply: no fds, nothing queued before it, one send.
                sent = _send_some(conn.sock, frame, fds) if fds else conn.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(conn)
                return
            if sent == len(frame):
                return
        owned: list[int] = []
        try:
            for fd in fds if sent == 0 else ():
                owned.append(os.dup(fd))
        except OSError as exc:  # out of fds: the reply cannot wait for the socket
            log.error(
                "closing connection of pid %d: cannot queue a reply: %s", conn.session.pid, exc
            )
            for fd in owned:
                os.close(fd)
            self._drop(conn)
            return
        conn.out.append([memoryview(frame)[sent:], owned])
        conn.out_bytes += len(frame) - sent
        self._want_write(conn, True)

    def _flush(self, conn: Connection) -> None:
        out = conn.out
        while out:
            item = out[0]
            view, fds = item
            try:
                sent = _send_some(conn.sock, view, fds)
            except (BlockingIOError, InterruptedError):
                self._want_write(conn, True)
                return
            except OSError:
                self._drop(conn)
                return
            if fds and sent:
                for fd in fds:
                    os.close(fd)
                item[1] = []
            conn.out_bytes -= sent
            if sent == len(view):
                out.popleft()
            else:
                item[0] = view[sent:]
        self._want_write(conn, False)

    def _want_write(self, conn: Connection, on: bool) -> None:
        self._watch(conn, write=on, read=conn.out_bytes <= _MAX_QUEUED)

    def _watch(self, conn: Connection, *, write: bool, read: bool) -> None:
        if (conn.want_write, conn.reading) == (write, read) or conn.sock.fileno() < 0:
            return
        conn.want_write, conn.reading = write, read
        events = (EVENT_READ if read else 0) | (EVENT_WRITE if write else 0)
        self.selector.modify(conn.sock, events, conn)


def _send_some(sock: socket.socket, data: bytes | memoryview, fds: list[int]) -> int:
    """One non-blocking send; ``fds`` (if any) ride with the first byte."""
    if fds:
        return sock.sendmsg(
            [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        )
    return sock.send(data)


class _HeldFd:
    """A dup of a segment's fd for a reply held until the journal sync: a later request of
    the same wakeup may retire (and close) the segment before the reply goes out."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = os.dup(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _holding_fds(reply: Reply) -> Reply:
    """``reply`` with its segments' fds dup'ed (closed once sent, as transient ones are)."""
    transient = {id(seg) for seg in reply.transient}
    fds: list[Any] = [seg if id(seg) in transient else _HeldFd(seg.fd) for seg in reply.segments]
    # Duck-typed: the transport reads ``.fd`` of each and calls ``.close()`` on the transient.
    closing: list[Any] = [*reply.transient, *(f for f in fds if isinstance(f, _HeldFd))]
    return Reply(reply.body, fds, closing, reply.sync)
