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
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import IO, Any

from agentmem.testing import DaemonProcess

#: Seconds a child may take to reach its next synchronisation point.
CHILD_TIMEOUT = 120.0


@contextlib.contextmanager
def private_daemon() -> Iterator[DaemonProcess]:
    """A fresh daemon on a private socket; stopped, and its directory removed, on exit. If the
    block fails, the daemon's log goes to stderr first (it is in that directory)."""
    d = DaemonProcess()
    try:
        with d:
            yield d
    except BaseException:
        print(f"daemon log ({d.dir}):\n{d.log()}", file=sys.stderr, flush=True)
        raise
    finally:
        shutil.rmtree(d.dir, ignore_errors=True)


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
