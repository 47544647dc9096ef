"""Starting the daemon: runtime directory, lock, socket, detaching, serving until SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable

from blake3 import blake3

from agentmem.config import Config, runtime_dir, state_dir
from agentmem.daemon import lifecycle
from agentmem.daemon.gcclock import GcClock
from agentmem.daemon.observe import STATS_FILE, Observer
from agentmem.daemon.server import Server
from agentmem.daemon.service import Service
from agentmem.errors import AgentmemError, DaemonRunning

#: Pending connections the kernel queues; 1000 agents may start at once.
BACKLOG = 4096


def run_daemon(
    socket_path: str,
    *,
    config: Config | None = None,
    detach: bool = False,
    if_absent: bool = False,
    allowed_uids: Iterable[int] | None = None,
    stats_file: bool = True,
    metrics: tuple[str, int] | None = None,
    state_dir: str | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status.

    ``allowed_uids`` (multi-user mode) admits other uids, each in its own domain; the socket
    is then reachable by them (its directory 0711, the socket 0666) and access is decided by
    ``SO_PEERCRED`` alone. Without it the directory is 0700 and only our uid is served.

    ``stats_file``: keep ``agent_stats`` (mode 0600) next to the socket, rewritten every
    second. ``metrics``: serve Prometheus metrics on this ``(host, port)`` (the caller has
    checked the address, see ``metrics.parse_address``).

    ``state_dir``: the journal and cold-tier packs (see :func:`daemon_state_dir`); None keeps
    everything in RAM (no cold tier, no durability).
    """
    multi = allowed_uids is not None
    directory = os.path.dirname(os.path.abspath(socket_path))
    try:
        if directory == runtime_dir() or not os.path.exists(directory):
            lifecycle.prepare_dir(directory, mode=0o711 if multi else 0o700)
    except PermissionError as exc:  # it names the directory and why
        print(f"agentmem daemon: {exc}", file=sys.stderr)
        return 1
    lock = lifecycle.Lock(socket_path)
    try:
        lock.acquire()
    except DaemonRunning as exc:
        if if_absent:
            return 0
        print(f"agentmem daemon: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the lock file cannot be made there
        print(f"agentmem daemon: cannot lock {lock.path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o111 if multi else 0o177)
    try:
        lifecycle.remove_stale_socket(socket_path)
        listener.bind(socket_path)
        listener.listen(BACKLOG)
    except OSError as exc:  # not a socket, a path too long for AF_UNIX, no write permission
        print(
            f"agentmem daemon: cannot listen on {socket_path}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        listener.close()
        lock.release()
        return 1
    finally:
        os.umask(old_umask)
    uids = None if allowed_uids is None else {os.getuid(), *allowed_uids}
    state_lock = None
    try:
        if state_dir is not None:
            lifecycle.prepare_dir(state_dir, mode=0o700, what="state directory")
            state_lock = lifecycle.Lock(os.path.join(state_dir, "daemon"))
            state_lock.acquire()
        service = Service(
            config if config is not None else Config.from_env(),
            allowed_uids=uids,
            state_dir=state_dir,
        )
        service.background_training = True  # the loop serves clients while zstd trains
    except (OSError, AgentmemError) as exc:
        reason = (
            f"the state directory {state_dir} is in use by another daemon"
            if isinstance(exc, DaemonRunning)
            else str(exc)
        )
        print(f"agentmem daemon: {reason}", file=sys.stderr)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        if state_lock is not None:
            state_lock.release()
        lock.release()
        return 1
    observer = Observer(
        service, stats_path=os.path.join(directory, STATS_FILE) if stats_file else None
    )
    metrics_server = None
    if metrics is not None:
        from agentmem.daemon.metrics import MetricsServer

        metrics_server = MetricsServer(observer, *metrics)
        try:
            metrics = metrics_server.bind()
        except OSError as exc:
            print(
                f"agentmem daemon: cannot serve metrics on {metrics[0]}:{metrics[1]}: {exc}",
                file=sys.stderr,
            )
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)
            lock.release()
            return 1
    ready: Callable[[], None] | None = None
    if detach:
        ready = lifecycle.detach(os.path.join(directory, "agentmem.log"))
        # The lock file names the pid that holds it: the grandchild now.
        os.pwrite(lock.fd, f"{os.getpid()}\n".encode().ljust(16), 0)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s agentmem[%(process)d] %(levelname)s %(message)s"
    )
    limit = lifecycle.raise_fd_limit()
    server = Server(service, listener)
    service.observer = observer
    service.gc_clock = GcClock(freeze=True)
    service.gc_clock.install()
    server.on_tick.append(observer.tick)
    server.on_tick.append(service.gc_clock.tick)
    server.install_signal_handlers()
    if ready is not None:
        ready()  # the caller of --detach returns now: socket listening, pid recorded
    log = logging.getLogger("agentmem.daemon")
    log.info("serving %s (pid %d, fd limit %d)", socket_path, os.getpid(), limit)
    if metrics_server is not None and metrics is not None:
        metrics_server.start()
        log.info("metrics on http://%s:%d/metrics", *metrics)
    try:
        server.serve_forever()
    finally:
        service.gc_clock.uninstall()  # a process that goes on after its daemon collects as usual
        if metrics_server is not None:
            metrics_server.stop()
        observer.remove_file()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        if state_lock is not None:
            state_lock.release()
        lock.release()
    return 0


def daemon_state_dir(socket_path: str, base: str | None = None) -> str:
    """The state directory of the daemon serving ``socket_path``: one per socket, under
    ``base`` (default :func:`agentmem.config.state_dir`), so daemons on different sockets
    never share a journal."""
    digest = blake3(os.path.abspath(socket_path).encode()).hexdigest()[:16]
    return os.path.join(base if base is not None else state_dir(), f"socket-{digest}")
