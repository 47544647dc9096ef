"""Helpers for attacking a real daemon: raw peers, processes of another uid, bounded waits.

Everything here talks to a daemon started by :class:`~agentmem.testing.DaemonProcess` over its
real socket. :class:`RawPeer` sends whatever bytes and fds a test wants, with no client logic in
the way; :class:`Child` runs a function in a forked process (optionally as ``nobody``) that
reports to the test through a pipe.
"""

from __future__ import annotations

import array
import collections
import contextlib
import errno
import os
import pickle
import pwd
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from agentmem.protocol import fdpass, framing
from agentmem.protocol import messages as m
from agentmem.testing import DaemonProcess

#: How long any single wait on the daemon may take before the test fails. The daemon answers in
#: microseconds; the bound only turns a hang into a failure on a loaded 2-core machine.
WAIT = 10.0


class Closed(Exception):
    """The daemon closed the connection (EOF or reset) before a reply arrived."""


class RawPeer:
    """A Unix socket to the daemon that sends raw bytes and fds and decodes raw replies."""

    def __init__(self, path: str, *, timeout: float = WAIT) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.inbox = fdpass.FdInbox()
        self.pending: list[fdpass.Received] = []
        self.ids = iter(range(1, 1 << 62))

    def send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """Send ``data`` as is; ``fds`` ride on its first byte (no check that the frame says so)."""
        view = memoryview(data)
        if fds:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
            view = view[self.sock.sendmsg([view], rights) :]
        if view:
            self.sock.sendall(view)

    def send_msg(self, msg: dict[str, object], fds: Sequence[int] = ()) -> None:
        self.send(framing.encode(msg, fds=bool(fds)), fds)

    def recv(self) -> tuple[dict[str, object], tuple[int, ...]]:
        """The next reply and its fds (the caller owns them); :class:`Closed` at EOF/reset."""
        while not self.pending:
            try:
                got = fdpass.recv_frames(self.sock, self.inbox)
            except (EOFError, ConnectionResetError) as exc:
                raise Closed(str(exc)) from None
            self.pending.extend(got)
        item = self.pending.pop(0)
        return item.frame.body, item.fds

    def reply(self) -> dict[str, object]:
        """The next reply, closing any fds that came with it."""
        body, fds = self.recv()
        for fd in fds:
            os.close(fd)
        return body

    def request(self, op: str, **args: object) -> dict[str, object]:
        """Send ``op`` under a fresh id and return its reply (fds closed)."""
        ident = next(self.ids)
        self.send_msg(m.request(op, ident, **args))
        body = self.reply()
        assert body.get("id") == ident, body
        return body

    def call(self, op: str, **args: object) -> Any:
        """Like :meth:`request`, but the result, or the error raised as its class."""
        return m.raise_for_reply(self.request(op, **args))

    def call_reply(self, ident: int) -> Any:
        """The result of the next reply, which must answer request ``ident`` (sent earlier)."""
        body = self.reply()
        assert body.get("id") == ident, body
        return m.raise_for_reply(body)

    def hello(self, name: str) -> dict[str, object]:
        return self.request(m.OP_HELLO, version=m.PROTOCOL_VERSION, name=name)

    def until_closed(self) -> list[dict[str, object]]:
        """Every reply still to come, until the daemon closes the connection."""
        replies: list[dict[str, object]] = []
        while True:
            try:
                replies.append(self.reply())
            except Closed:
                return replies

    def close(self) -> None:
        self.inbox.close()
        for item in self.pending:
            for fd in item.fds:
                os.close(fd)
        self.pending.clear()
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Tests that act as another user: only root can drop to ``nobody``.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def become(user: pwd.struct_passwd) -> None:
    """Drop every privilege to ``user`` (this process only: call it in a child)."""
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


class Child:
    """A forked process running ``fn(channel)``, optionally as another user.

    The child reports with ``channel.send(obj)`` (pickled through a pipe) and may block in
    ``channel.wait()`` until the parent calls :meth:`release`. Whatever ``fn`` returns is sent
    last; an exception in it reaches the parent as an AssertionError (with the child's
    traceback) from :meth:`recv`.
    """

    def __init__(self, fn: Callable[[Channel], object], *, user: pwd.struct_passwd | None = None):
        up_r, up_w = os.pipe()
        down_r, down_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 0
            try:
                os.close(up_r)
                os.close(down_w)
                if user is not None:
                    become(user)
                channel = Channel(up_w, down_r)
                channel.send(fn(channel))
            except BaseException:
                status = 1
                with contextlib.suppress(BaseException):
                    Channel(up_w, down_r).send(traceback.format_exc(), kind="raised")
            finally:
                os._exit(status)
        os.close(up_w)
        os.close(down_r)
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self._up = up_r
        self._down = down_w

    def recv(self, timeout: float = WAIT) -> Any:
        """The next object the child sent; re-raises the child's exception as AssertionError."""
        deadline = time.monotonic() + timeout
        header = self._read_exactly(4, deadline)
        kind, value = pickle.loads(self._read_exactly(int.from_bytes(header, "little"), deadline))
        if kind == "raised":
            raise AssertionError(f"child {self.pid} failed:\n{value}")
        return value

    def _read_exactly(self, n: int, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            ready, _, _ = select.select([self._up], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"child {self.pid} sent nothing in time")
            got = os.read(self._up, n - len(data))
            if not got:
                raise AssertionError(f"child {self.pid} exited without reporting")
            data += got
        return data

    def release(self) -> None:
        """Let a child blocked in ``channel.wait()`` go on."""
        os.write(self._down, b"g")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and wait (on the pidfd) until the child is gone."""
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, sig)
        self.join()

    def join(self, timeout: float = WAIT) -> int:
        """Wait for the child to exit; return its wait status."""
        ready, _, _ = select.select([self.pidfd], [], [], timeout)
        if not ready:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise TimeoutError(f"child {self.pid} did not exit within {timeout} s")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.pidfd)
        os.close(self._up)
        os.close(self._down)
        return status


class Channel:
    """The child's end of a :class:`Child`'s pipes."""

    def __init__(self, up: int, down: int) -> None:
        self._up = up
        self._down = down

    def send(self, obj: object, *, kind: str = "ok") -> None:
        data = pickle.dumps((kind, obj))
        view = memoryview(len(data).to_bytes(4, "little") + data)
        while view:
            view = view[os.write(self._up, view) :]

    def wait(self) -> None:
        os.read(self._down, 1)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Re-check ``cond`` until it holds; fail after ``timeout`` seconds.

    For conditions only the daemon's own progress makes true (a closed connection released, a
    line logged, the process asleep), which no event announces: polled, backing off from
    0.5 ms to 10 ms so the daemon keeps the CPU it needs to get there.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def open_fds(pid: int) -> int:
    """Number of file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def daemon_fds(pid: int, *, segments: bool = False) -> collections.Counter[str]:
    """The daemon's open descriptors by kind; hot segments only with ``segments`` (they come
    and go with content). Left out always: the files the once-a-second statistics tick holds
    open for an instant (/proc/self/smaps_rollup for the daemon's PSS, the agent_stats file
    being rewritten)."""
    kinds: collections.Counter[str] = collections.Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith("/proc/") or "agent_stats" in target:
            continue
        if not segments and "agentmem-seg-" in target:
            continue
        kinds[target.split(":", 1)[0]] += 1
    return kinds


def closed_by_peer(fd: int, timeout: float = WAIT) -> bool:
    """True once every other copy of the pipe write end paired with read end ``fd`` is closed."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 1) == b""


def is_reset(exc: OSError) -> bool:
    return exc.errno in (errno.ECONNRESET, errno.EPIPE)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """A default daemon (only our uid), shared by a test module."""
    with DaemonProcess() as d:
        yield d
