"""Starting a daemon on first use, race-free when many agents start at once.

Every client that finds no daemon spawns ``python -m agentmem daemon --detach --if-absent``.
The daemons race for the socket's lock; exactly one wins and binds, the others exit 0. Each
client then waits for the socket to accept connections.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from agentmem.errors import DaemonUnavailable

#: How long a client waits for a daemon it started to accept connections. A cold start
#: (interpreter, imports, bind) takes ~150 ms here; 10 s covers a loaded machine.
START_TIMEOUT = 10.0


def _accepting(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def start_daemon(path: str, *, timeout: float = START_TIMEOUT) -> None:
    """Spawn a detached daemon for ``path`` unless one answers; wait until it does."""
    if _accepting(path):
        return
    cmd = [sys.executable, "-m", "agentmem", "daemon", "--socket", path, "--detach", "--if-absent"]
    result = subprocess.run(
        cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
    )
    if result.returncode != 0:
        raise DaemonUnavailable(
            f"could not start a daemon: {result.stderr.decode(errors='replace').strip()}"
        )
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not _accepting(path):
        if time.monotonic() > deadline:
            raise DaemonUnavailable(f"the daemon started for {path} did not answer in {timeout} s")
        time.sleep(delay)  # polling a socket another process is about to bind: no event exists
        delay = min(delay * 2, 0.1)
