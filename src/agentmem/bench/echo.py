"""The round-trip floor: a ~100-byte echo through each kind of event loop a daemon could use.

Each server is a forked child echoing on a Unix socket; the client is blocking and sends one
message at a time, as an agent's synchronous client does. The kinds:

* ``epoll``: a ``selectors`` loop calling ``recv``/``send`` itself (the daemon's kind of loop);
* ``agentmem_framing``: the same loop, decoding each frame with ``fdpass.recv_frames`` and
  re-encoding it, against the daemon client's own ``UnixSocketTransport``: what every daemon
  operation pays before the service does any work;
* ``asyncio_streams``, ``asyncio_protocol``, ``uvloop_protocol``: the alternatives the daemon
  did not take (DESIGN.md, "IPC").
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import selectors
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from agentmem.bench import pss
from agentmem.bench import report as rp
from agentmem.bench.fleet import fork, pinned
from agentmem.protocol import fdpass, framing

#: Bytes of one round trip's message: the size of a small request frame.
ECHO_BYTES = 100
KINDS = ("epoll", "agentmem_framing", "asyncio_streams", "asyncio_protocol", "uvloop_protocol")


def _serve_epoll(listener: socket.socket, framed: bool) -> None:
    """Echo every message (raw bytes, or decoded frames re-encoded) with a selectors loop."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                conn, _ = listener.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, (conn, fdpass.FdInbox()))
                continue
            conn, inbox = key.data
            try:
                if framed:
                    for item in fdpass.recv_frames(conn, inbox):
                        conn.send(framing.encode(item.frame.body))
                    continue
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except EOFError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
            else:
                conn.send(data)


def _serve_asyncio(listener: socket.socket, kind: str) -> None:
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    if kind == "uvloop_protocol":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    if kind == "asyncio_streams":
        loop.run_until_complete(asyncio.start_unix_server(streams, sock=listener))
    else:
        loop.run_until_complete(loop.create_unix_server(Echo, sock=listener))
    loop.run_forever()


def _serve_echo(listener: socket.socket, kind: str) -> None:
    if kind in ("epoll", "agentmem_framing"):
        _serve_epoll(listener, framed=kind == "agentmem_framing")
    else:
        _serve_asyncio(listener, kind)


def _echo_call(path: str, kind: str) -> tuple[Callable[[int], object], Callable[[], None]]:
    """One round trip as a call, and how to close the connection."""
    if kind == "agentmem_framing":
        from agentmem.client.transport import UnixSocketTransport

        transport = UnixSocketTransport(path)
        pad = b"x" * (ECHO_BYTES - len(framing.encode({"id": 0, "op": "echo", "data": b""})))
        return (lambda i: transport.request({"id": i, "op": "echo", "data": pad})), transport.close
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    msg, buf = b"x" * ECHO_BYTES, bytearray(65536)

    def call(_: int) -> None:
        sock.sendall(msg)
        got = 0
        while got < ECHO_BYTES:
            n = sock.recv_into(buf)
            if not n:
                raise EOFError("echo server closed")
            got += n

    return call, sock.close


@contextlib.contextmanager
def echo_server(kind: str) -> Iterator[tuple[Callable[[int], object], int]]:
    """An echo server of ``kind`` in a forked child; yields a connected round-trip call and
    the server's pid. The server is killed on exit."""
    tmp = tempfile.mkdtemp(prefix="agentmem-echo-")
    path = os.path.join(tmp, "echo.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(16)
        server = fork(_serve_echo, listener, kind)
    finally:
        listener.close()
    try:
        call, close = _echo_call(path, kind)
        try:
            assert server.pid is not None
            yield call, server.pid
        finally:
            close()
    finally:
        server.terminate()
        server.join()
        shutil.rmtree(tmp, ignore_errors=True)


def available(kind: str) -> bool:
    """Whether this machine can run ``kind`` (uvloop is optional)."""
    return kind != "uvloop_protocol" or importlib.util.find_spec("uvloop") is not None


def bench_echo(
    calls: int, warmup: int, repeats: int, places: dict[str, tuple[int, int]]
) -> dict[str, Any]:
    """Round trips of ECHO_BYTES through each kind of echo server (a child process each), once
    per placement (:func:`~agentmem.bench.fleet.placements`); within each run the kinds and
    placements take turns, so a change in the machine's load hits them alike."""
    out: dict[str, Any] = {
        "notes": f"Round trip of a {ECHO_BYTES}-byte message from a blocking client to a child "
        "process that echoes it. epoll: selectors loop with recv/send (the daemon's loop); "
        "agentmem_framing: the same loop decoding each frame with fdpass.recv_frames and "
        "re-encoding it, the client using the daemon client's UnixSocketTransport (the floor "
        "of any daemon operation); asyncio_*: the standard event loop; uvloop_protocol: "
        "uvloop with a Protocol. Each kind is measured with client and server pinned to one "
        "CPU (same_cpu) and to two (cross_cpu); within each run kinds and placements take "
        "turns. p50/p99/mean in us; median over runs. server_cpu_us / client_cpu_us: CPU per "
        "round trip of each side (the scheduler's run time of the server's threads, "
        "process_time of the client; warm-up included).",
        "bytes": ECHO_BYTES,
        "placements": places,
    }
    kinds = [k for k in KINDS if available(k)]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as stack:
        servers = {k: stack.enter_context(echo_server(k)) for k in kinds}
        for _ in range(repeats):
            for place, (client_cpu, server_cpu) in places.items():
                for kind, (call, pid) in servers.items():
                    with pinned(client_cpu, server_cpu, [pid]):
                        s0, c0 = pss.cpu_seconds_ns(pid), time.process_time()
                        fig = rp.latency_us(rp.timed(call, calls, warmup))
                        s1, c1 = pss.cpu_seconds_ns(pid), time.process_time()
                    runs.setdefault((kind, place), []).append(fig)
                    used = cpu.setdefault((kind, place), [0.0, 0.0])
                    used[0] += s1 - s0
                    used[1] += c1 - c0
    every = (calls + warmup) * repeats
    for kind in KINDS:
        out[kind] = None  # not available here
        if kind in kinds:
            out[kind] = figs = {}
            for place in places:
                figs[place] = fig = rp.median_of_runs(runs[kind, place])
                fig["server_cpu_us"] = round(cpu[kind, place][0] * 1e6 / every, 1)
                fig["client_cpu_us"] = round(cpu[kind, place][1] * 1e6 / every, 1)
    return out
