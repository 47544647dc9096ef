"""Starting the daemon: runtime directory, lock, socket, detaching, serving until SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterable

from agentmem.config import Config, runtime_dir
from agentmem.daemon import lifecycle
from agentmem.daemon.server import Server
from agentmem.daemon.service import Service
from agentmem.errors import DaemonRunning

#: Pending connections the kernel queues; 1000 agents may start at once.
BACKLOG = 4096


def run_daemon(
    socket_path: str,
    *,
    config: Config | None = None,
    detach: bool = False,
    if_absent: bool = False,
    allowed_uids: Iterable[int] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status.

    ``allowed_uids`` (multi-user mode) admits other uids, each in its own domain; the socket
    is then reachable by them (its directory 0711, the socket 0666) and access is decided by
    ``SO_PEERCRED`` alone. Without it the directory is 0700 and only our uid is served.
    """
    multi = allowed_uids is not None
    directory = os.path.dirname(os.path.abspath(socket_path))
    if directory == runtime_dir() or not os.path.exists(directory):
        lifecycle.prepare_dir(directory, mode=0o711 if multi else 0o700)
    lock = lifecycle.Lock(socket_path)
    try:
        lock.acquire()
    except DaemonRunning as exc:
        if if_absent:
            return 0
        print(f"agentmem daemon: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o111 if multi else 0o177)
    try:
        listener.bind(socket_path)
    finally:
        os.umask(old_umask)
    listener.listen(BACKLOG)
    if detach:
        lifecycle.detach(os.path.join(directory, "agentmem.log"))
        # The lock file names the pid that holds it: the grandchild now.
        os.pwrite(lock.fd, f"{os.getpid()}\n".encode().ljust(16), 0)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s agentmem[%(process)d] %(levelname)s %(message)s"
    )
    limit = lifecycle.raise_fd_limit()
    uids = None if allowed_uids is None else {os.getuid(), *allowed_uids}
    service = Service(config if config is not None else Config.from_env(), allowed_uids=uids)
    server = Server(service, listener)
    server.install_signal_handlers()
    logging.getLogger("agentmem.daemon").info(
        "serving %s (pid %d, fd limit %d)", socket_path, os.getpid(), limit
    )
    try:
        server.serve_forever()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        lock.release()
    return 0
