"""A client survives its daemon going away: one call fails, the next reconnects."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

import agentmem
from agentmem.errors import DaemonUnavailable, UnknownHandle
from agentmem.testing import DaemonProcess


def test_client_reconnects_after_the_daemon_restarts() -> None:
    daemon = DaemonProcess().start()
    try:
        client = agentmem.connect(daemon.socket, name="survivor")
        old = client.alloc_smu("system_prompt", b"before the restart")
        daemon.kill(signal.SIGKILL)
        with pytest.raises(DaemonUnavailable):
            client.read(old)
        # A new daemon on the same socket (the stale socket file must not stop it).
        cmd = [sys.executable, "-m", "agentmem", "daemon", "--socket", daemon.socket, "--detach"]
        subprocess.run(cmd, check=True, timeout=60)
        with open(daemon.socket + ".lock") as f:
            daemon.pid = int(f.read().split()[0])
        new = client.alloc_smu("system_prompt", b"after the restart")
        assert client.reconnects == 1
        assert client.name == "survivor"
        assert bytes(client.read(new)) == b"after the restart"
        with pytest.raises(UnknownHandle):
            client.read(old)  # its ref died with the old connection
        client.close()
    finally:
        daemon.kill()
