"""The in-process transport: the client API against a service in the same process.

For programs that run many asyncio agents in one interpreter: each agent gets its own client
and session (its own handles, its own agent in the stats), with no daemon, no socket and no
serialisation. Hot segments are handed to the client as read-only views of the store's own
mapping, so reads stay zero-copy.

What the daemon's loop does between requests happens here too: while the process-wide
service (:func:`shared_service`, what ``connect(inprocess=True)`` uses) has clients open, a
thread runs its maintenance ticks (``daemon/maintenance.py``: content of idle agents goes
warm and cold, segments are compacted) on the daemon's schedule, so an in-process program's
idle conversations are compressed as a daemon's would be. A caller that passes its own
:class:`Service` runs its maintenance itself (``maintain=True`` hands it to the thread). One
lock per service serialises the ticks with every client's calls, which also makes in-process
clients safe to use from several threads (one client per thread, as with the daemon).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

from agentmem.config import Config
from agentmem.daemon import maintenance
from agentmem.daemon.service import DEFERRED_SLICE, Deferred, Service
from agentmem.errors import DaemonUnavailable

_SHARED: Service | None = None


def shared_service(config: Config | None = None) -> Service:
    """The process-wide service that in-process clients share (created on first use)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Service(config if config is not None else Config.from_env())
    return _SHARED


class _Runner:
    """A service's lock and, while clients are open, the thread that runs its maintenance."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.lock = threading.Lock()
        self.clients = 0
        self.ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def opened(self, maintain: bool) -> None:
        """A client opened (call with ``_RUNNERS_LOCK`` held); ``maintain``: the thread is
        to run the service's maintenance (from now until the last client closes)."""
        self.clients += 1
        if maintain and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="agentmem-maintenance", daemon=True
            )
            self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held by a thread that
        the child does not have) and, if the parent ran one, a maintenance thread of its own."""
        self.lock = threading.Lock()
        had = self._thread is not None
        self._thread = None
        self._stop = threading.Event()
        if had:
            self.clients -= 1  # opened() counts it again
            self.opened(True)

    def closed(self) -> threading.Thread | None:
        """A client closed (call with ``_RUNNERS_LOCK`` held); returns the thread to join
        once it was the last one."""
        self.clients -= 1
        if self.clients or self._thread is None:
            return None
        thread, self._thread = self._thread, None
        self._stop.set()
        return thread

    def _run(self) -> None:
        delay = maintenance.INTERVAL
        while not self._stop.wait(delay):
            with self.lock:
                if self._stop.is_set():
                    return
                maintenance.run(self.service, time.thread_time)
                self.ticks += 1
                backlog = self.service.maintenance_backlog
            delay = maintenance.BACKLOG_INTERVAL if backlog else maintenance.INTERVAL


_RUNNERS: dict[int, _Runner] = {}  # id(service) -> its runner, while it has clients
_RUNNERS_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _RUNNERS_LOCK
    _RUNNERS_LOCK = threading.Lock()
    for runner in _RUNNERS.values():
        runner.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def runner_of(service: Service) -> _Runner | None:
    """The runner of ``service`` while it has in-process clients open (else None)."""
    return _RUNNERS.get(id(service))


class InProcessTransport:
    """A transport that calls :meth:`Service.handle` directly, under the service's lock.

    ``maintain`` (default: when ``service`` is the process-wide one): the service's
    maintenance runs in a thread while it has clients (see the module docstring)."""

    def __init__(self, service: Service | None = None, *, maintain: bool | None = None) -> None:
        self.service = service if service is not None else shared_service()
        with _RUNNERS_LOCK:
            runner = _RUNNERS.get(id(self.service))
            if runner is None:
                runner = _RUNNERS[id(self.service)] = _Runner(self.service)
            runner.opened(service is None if maintain is None else maintain)
        self._runner = runner
        with runner.lock:
            self._session = self.service.open(os.getpid(), os.getuid())
        self._closed = False

    def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[int | memoryview]]:
        if self._closed:
            raise DaemonUnavailable("the connection is closed")
        # The service takes ownership of the fds it is given; the caller keeps its own.
        owned = tuple(os.dup(fd) for fd in fds)
        with self._runner.lock:  # looked up each call: a forked child replaces it
            reply = self.service.handle(self._session, msg, owned)
            if reply.sync:
                self.service.sync()
            done = reply.__class__ is not Deferred or reply.advance(DEFERRED_SLICE)
        while not done:  # a walk in steps: other threads' calls run between its slices
            with self._runner.lock:
                done = reply.advance(DEFERRED_SLICE)  # type: ignore[attr-defined]
        return reply.body, [seg.view_all for seg in reply.segments]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._runner.lock:
            self.service.close(self._session)
        with _RUNNERS_LOCK:
            last = self._runner.closed()
            if last is not None:
                # Joined before a new client can make a new runner (and a new lock): a tick
                # still running must not overlap the calls of the next one.
                last.join()
                del _RUNNERS[id(self.service)]


class AsyncInProcessTransport:
    """:class:`InProcessTransport` for the asyncio client: calls return without awaiting I/O."""

    def __init__(self, service: Service | None = None, *, maintain: bool | None = None) -> None:
        self._sync = InProcessTransport(service, maintain=maintain)

    async def request(
        self, msg: dict[str, object], fds: Sequence[int] = ()
    ) -> tuple[dict[str, object], list[int | memoryview]]:
        return self._sync.request(msg, fds)

    def close(self) -> None:
        self._sync.close()
