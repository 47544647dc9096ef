"""``agentmem top`` driven in a real pseudo-terminal: what a person sees and types."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from agentmem.client import Client, connect
from agentmem.testing import DaemonProcess

#: Bound on any one wait for the screen; a hang becomes a failure, not a stuck suite.
WAIT = 15.0
_ANSI = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)


class Screen:
    """``agentmem top`` in a pty of 50 rows x 160 columns; collects what it prints."""

    def __init__(self, socket_path: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
            env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
            os.execve(
                sys.executable,
                [sys.executable, "-m", "agentmem", "top", "--socket", socket_path],
                env,
            )
        self.pid, self.fd = pid, fd
        self.raw = b""

    def text(self) -> str:
        return _ANSI.sub(b"", self.raw).decode(errors="replace")

    def wait_for(self, needle: str, *, after: int = 0) -> None:
        """Read output until ``needle`` shows up in what was printed after byte ``after``."""
        deadline = time.monotonic() + WAIT
        while needle not in _ANSI.sub(b"", self.raw[after:]).decode(errors="replace"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"{needle!r} never appeared; screen:\n{self.text()[-3000:]}")
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"top exited before {needle!r}; screen:\n{self.text()}")
            self.raw += chunk

    def press(self, keys: bytes) -> int:
        """Type ``keys``; returns the output offset before them (for :meth:`wait_for`)."""
        mark = len(self.raw)
        os.write(self.fd, keys)
        return mark

    def exit_status(self) -> int:
        """Drain the output until the child exits; its exit status."""
        pidfd = os.pidfd_open(self.pid)
        try:
            deadline = time.monotonic() + WAIT
            while True:
                ready, _, _ = select.select([self.fd, pidfd], [], [], deadline - time.monotonic())
                if not ready:
                    os.kill(self.pid, signal.SIGKILL)
                    raise AssertionError("top did not exit")
                if self.fd in ready:
                    try:
                        chunk = os.read(self.fd, 65536)
                    except OSError:
                        chunk = b""
                    self.raw += chunk
                    if chunk:
                        continue
                if pidfd in ready:
                    break
        finally:
            os.close(pidfd)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess() as d:
        yield d


@pytest.fixture(scope="module")
def agents(daemon: DaemonProcess) -> Iterator[list[Client]]:
    big = connect(daemon.socket, name="planner-big")
    small = connect(daemon.socket, name="coder-small", state="idle")
    prompt = "You are one of many careful agents. " * 3000
    big.alloc_smu("system_prompt", prompt)
    small.alloc_smu("system_prompt", prompt)
    big.alloc_smu("tool_result", os.urandom(200_000))  # its own: most unique bytes
    small.alloc_smu("tool_result", os.urandom(20_000))
    yield [big, small]
    big.close()
    small.close()


def test_top_shows_agents_sorts_on_s_and_quits_on_q(
    daemon: DaemonProcess, agents: list[Client]
) -> None:
    screen = Screen(daemon.socket)
    try:
        screen.wait_for("coder-small")
        text = screen.text()
        assert "planner-big" in text
        assert "sort: logical" in text
        assert "agentmem-top-" not in text  # the viewer is an observer, not an agent
        assert "PSS" in text and "DedupRatio" in text and "AgentsIdle" in text
        mark = screen.press(b"s")
        screen.wait_for("sort: unique", after=mark)
        mark = screen.press(b"f")
        screen.wait_for("filter: active", after=mark)
        screen.wait_for("agents: 1 of 2", after=mark)
        screen.press(b"q")
        assert screen.exit_status() == 0
    finally:
        screen.close()


def test_ctrl_c_exits_cleanly_and_restores_the_terminal(
    daemon: DaemonProcess, agents: list[Client]
) -> None:
    screen = Screen(daemon.socket)
    try:
        screen.wait_for("planner-big")
        # top runs in cbreak mode: no line buffering, no echo.
        assert not termios.tcgetattr(screen.fd)[3] & termios.ICANON
        screen.press(b"\x03")  # Ctrl-C: SIGINT from the terminal
        assert screen.exit_status() == 0
        lflag = termios.tcgetattr(screen.fd)[3]
        assert lflag & termios.ICANON and lflag & termios.ECHO
        assert "\x1b[?1049l" in screen.raw.decode(errors="replace")  # left the alternate screen
    finally:
        screen.close()
