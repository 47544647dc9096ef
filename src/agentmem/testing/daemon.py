"""A real daemon process for tests and benchmarks, started and stopped without guesswork.

Start: ``agentmem daemon --detach`` returns only once the socket is bound and listening, so
when :meth:`DaemonProcess.start` returns, connections succeed. Stop: SIGTERM, then wait for the
process to exit on a pidfd (no polling, no sleeps).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence


class DaemonProcess:
    """A daemon on a socket in a fresh private directory (its state directory in there too,
    unless ``extra_args`` names one). Context manager."""

    def __init__(self, *, extra_args: Sequence[str] = (), env: dict[str, str] | None = None):
        self.dir = tempfile.mkdtemp(prefix="agentmem-test-")
        os.chmod(self.dir, 0o700)
        self.socket = os.path.join(self.dir, "agentmem.sock")
        self.extra_args = list(extra_args)
        self.env = env
        self.pid = -1

    def start(self) -> DaemonProcess:
        """Start (or start again, on the same socket and state directory) and return self."""
        cmd = [sys.executable, "-m", "agentmem", "daemon", "--socket", self.socket, "--detach"]
        if "--state-dir" not in self.extra_args:
            # Journal and packs inside the daemon's own directory, gone with it.
            cmd += ["--state-dir", os.path.join(self.dir, "state")]
        subprocess.run([*cmd, *self.extra_args], check=True, env=self.env, timeout=60)
        with open(self.socket + ".lock") as f:
            self.pid = int(f.read().split()[0])
        return self

    def alive(self) -> bool:
        """Whether the daemon still runs. A detached daemon is not our child: when it dies it
        may stay a zombie (if nothing reaps orphans), which ``kill(pid, 0)`` cannot tell apart
        from a live process, so the state is read from ``/proc``."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state not in ("Z", "X")

    def kill(self, sig: int = signal.SIGTERM, *, timeout: float = 30.0) -> None:
        """Send ``sig`` and wait until the process has exited."""
        if self.pid < 0:
            return
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self.pid = -1
            return
        try:
            os.kill(self.pid, sig)
            ready, _, _ = select.select([pidfd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"daemon {self.pid} did not exit within {timeout} s")
        finally:
            os.close(pidfd)
        self.pid = -1

    def log(self) -> str:
        """What the daemon logged so far."""
        try:
            with open(os.path.join(self.dir, "agentmem.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.kill()
            return
        # The block failed: its error is the one to report, not a slow exit after it.
        try:
            self.kill()
        except TimeoutError:
            self.kill(signal.SIGKILL)
