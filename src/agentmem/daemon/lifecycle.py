"""Runtime directory, the lock that makes a daemon unique per socket, and detaching.

The runtime directory holds the socket, the lock file and the log. It must be ours and private
(0700): the socket's permissions are not a reliable access check on every system, the
directory's are. The lock is an ``flock`` on ``<socket>.lock``: the kernel drops it when the
daemon dies, however it dies, so a stale lock never blocks a restart, and two daemons racing
for one socket cannot both win (the loser exits; with ``--if-absent`` it exits 0, which is what
clients that start a daemon on first use rely on).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
from collections.abc import Callable

from agentmem.errors import DaemonRunning


def prepare_dir(path: str, *, mode: int = 0o700, what: str = "runtime directory") -> None:
    """Create ``path`` with ``mode`` if missing; refuse one that is not ours or is too open.
    ``what`` names the directory in the error (``PermissionError``)."""
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"cannot create {what} {path}: {exc}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to us ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & ~mode & 0o777:
        os.chmod(path, mode)


def remove_stale_socket(path: str) -> None:
    """Remove the socket a dead daemon left at ``path`` (the caller holds its lock, so no live
    daemon listens there). Raises ``FileExistsError`` if ``path`` is something else: a file or
    a directory given as the socket path is the user's, and never removed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a file"
        raise FileExistsError(errno.EEXIST, f"{kind} is there, not a socket; left as it is", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Lock:
    """An exclusive ``flock`` on ``<socket>.lock`` holding the daemon's pid."""

    def __init__(self, socket_path: str) -> None:
        self.path = socket_path + ".lock"
        self.fd = -1

    def acquire(self) -> None:
        """Take the lock or raise :class:`DaemonRunning` (naming the holder's pid).

        A holder removes the file as it exits (:meth:`release`). A lock won on a file already
        removed from ``path`` is worth nothing (the next daemon creates a new file and wins
        too), so it is dropped and taken again on the file now at ``path``.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise DaemonRunning(
                    f"a daemon (pid {holder}) already serves {self.path[:-5]}"
                ) from None
            mine = os.fstat(fd)
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = -1


def detach(log_path: str) -> Callable[[], None]:
    """Become a background daemon: double fork, new session, stdio to ``log_path``.

    Returns in the grandchild only, with a ``ready`` function to call once the daemon is ready
    (its pid recorded, its socket listening). The original process waits for that and only
    then exits 0 (1 if the daemon died first): whoever ran ``agentmem daemon --detach`` may
    connect, and read the pid from the lock file, as soon as it returns.
    """
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        ok = os.read(read_end, 1) == b"1"  # b"" if every daemon-side copy closed first
        os._exit(0 if ok else 1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)

    def ready() -> None:
        with contextlib.suppress(OSError):
            os.write(write_end, b"1")
            os.close(write_end)

    return ready


def raise_fd_limit() -> int:
    """Raise the soft fd limit to the hard one (1000 clients plus segments need > 1024)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft
