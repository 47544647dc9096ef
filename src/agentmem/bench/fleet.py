"""The processes a benchmark runs, and the pipes that make them hold still while measured.

A private daemon per scenario (:func:`private_daemon`), forked workers (:func:`fork`) and fresh
interpreters, synchronised without sleeps: a child writes to a pipe when it reaches a point
(connected, loaded, done), and waits on another pipe until the parent has measured. Every wait
is bounded by :data:`CHILD_TIMEOUT`, so a child that dies turns into an error, not a hang.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import select
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.process import BaseProcess
from typing import IO, Any

from agentmem.testing import DaemonProcess

#: Seconds a child may take to reach its next synchronisation point.
CHILD_TIMEOUT = 120.0


@contextlib.contextmanager
def private_daemon(
    extra_args: Iterable[str] = (), env: dict[str, str] | None = None
) -> Iterator[DaemonProcess]:
    """A fresh daemon on a private socket (``extra_args`` added to its command line, ``env``
    its environment); stopped, and its directory removed, on exit. If the block fails, the
    daemon's log goes to stderr first (it is in that directory)."""
    d = DaemonProcess(extra_args=list(extra_args), env=env)
    try:
        with d:
            d.pid = _serving_pid(d)
            yield d
    except BaseException:
        print(f"daemon log ({d.dir}):\n{d.log()}", file=sys.stderr, flush=True)
        raise
    finally:
        shutil.rmtree(d.dir, ignore_errors=True)


def _serving_pid(d: DaemonProcess) -> int:
    """The pid of the process serving ``d``'s socket.

    ``agentmem daemon --detach`` may return before the detached grandchild has written its pid
    over its parent's in the lock file, so the pid ``DaemonProcess`` read can name a process
    that has already exited (and stopping it would leave the daemon running). Read the lock
    again until it names a live process serving this socket (a few ms at most).
    """
    deadline = time.monotonic() + 10.0
    while True:
        with open(d.socket + ".lock") as f:
            pid = int(f.read().split()[0])
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if d.socket.encode() in f.read():
                    return pid
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no live daemon named in {d.socket}.lock (last: pid {pid})")
        select.select([], [], [], 0.001)


def placements() -> dict[str, tuple[int, int]]:
    """Where a latency benchmark puts its (client, server) processes: on one CPU, and on two.

    A round trip's cost depends mostly on this: measured on this project's 2-vCPU VMs, a raw
    echo takes ~12.5 us with both ends on one CPU (a context switch) and ~55 us across two
    (a cross-CPU wake-up), while the scheduler, left alone, alternates between the two from
    one run to the next. So latencies are taken pinned, once per placement, each beside a
    baseline pinned the same way. ``cross_cpu`` is absent on a one-CPU machine.
    """
    cpus = sorted(os.sched_getaffinity(0))
    out = {"same_cpu": (cpus[0], cpus[0])}
    if len(cpus) > 1:
        out["cross_cpu"] = (cpus[0], cpus[1])
    return out


@contextlib.contextmanager
def pinned(client_cpu: int, server_cpu: int, server_pids: Iterable[int]) -> Iterator[None]:
    """Run this process on ``client_cpu`` and the (single-threaded) servers on ``server_cpu``;
    every affinity is restored on exit."""
    mine = os.sched_getaffinity(0)
    pids = list(server_pids)
    saved = {pid: os.sched_getaffinity(pid) for pid in pids}
    try:
        os.sched_setaffinity(0, {client_cpu})
        for pid in pids:
            os.sched_setaffinity(pid, {server_cpu})
        yield
    finally:
        os.sched_setaffinity(0, mine)
        for pid, cpus in saved.items():
            with contextlib.suppress(OSError):  # a server that has exited
                os.sched_setaffinity(pid, cpus)


def fork(target: Callable[..., None], *args: object) -> BaseProcess:
    """Start ``target(*args)`` in a forked child (it inherits every fd: close what it must not
    hold, e.g. the write end of a pipe whose EOF it waits for)."""
    proc = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def wait_bytes(fd: int, n: int, what: str) -> bytes:
    """At least ``n`` bytes from a pipe (``RuntimeError`` on EOF or timeout)."""
    out = b""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise RuntimeError(f"{what}: children stopped after {len(out)} of {n} bytes")
        out += chunk
    return out


def wait_lines(fd: int, n: int, what: str) -> list[dict[str, Any]]:
    """``n`` JSON lines from a pipe that many children write to (each line one ``write`` of
    less than PIPE_BUF bytes, so lines never interleave)."""
    buf = b""
    while buf.count(b"\n") < n:
        buf += wait_bytes(fd, 1, what)
    return [json.loads(line) for line in buf.splitlines()]


def expect_line(stream: IO[bytes] | None, what: str) -> bytes:
    """The next line a child writes to its stdout (``RuntimeError`` if it exited instead)."""
    assert stream is not None
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what}: the child exited early (see its stderr above)")
    return line
