"""The mock LLM: an HTTP server on loopback that replays recorded trajectories.

``POST /v1/agents/<i>/messages`` reads the whole request body and answers at once with agent
``i``'s next recorded reply, ``{"message": <assistant message>, "results": [<tool results>]}``,
or ``{"done": true}`` once its trajectory is played out. Tool results travel with the
assistant message because the swarm runs no tools: the recorded result is what the tool gave.
Answers cost nothing to compute, so an agent's turn time is its own overhead plus the transfer.

``GET /v1/agents/<i>/requests`` (with ``check``): what each of agent ``i``'s requests held,
parsed: body bytes and SHA-256, system blocks, tools, messages. ``GET /v1/stats``: requests and
bytes received.

asyncio, one thread: a thousand agents keep a thousand keep-alive connections open, which an
event loop serves without a thread each. Bodies are read in 1 MiB pieces and dropped (unless
``check``), so the server holds no agent's data. It runs in a process of its own, left out of
the swarm's memory and CPU totals: it stands for a remote service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Bytes read from the socket at a time while draining a request body.
READ_BYTES = 1 << 20
DONE = b'{"done":true}'


def load_replies(path: Path) -> dict[int, list[bytes]]:
    """Each agent's replies, in order, as the JSON bodies the server sends (``turns.jsonl``)."""
    out: dict[int, list[bytes]] = {}
    with path.open("rb") as f:
        for line in f:
            rec = json.loads(line)
            out[rec["agent"]] = [
                json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode()
                for r in rec["replies"]
            ]
    return out


class MockLLM:
    """The server's state: replies per agent, how far each agent got, what was received.

    Not thread-safe: only the event loop touches it.
    """

    def __init__(self, replies: dict[int, list[bytes]], *, check: bool = False) -> None:
        self.replies = replies
        self.check = check
        self.next: dict[int, int] = {}
        self.requests = 0
        self.bytes_received = 0
        self.seen: dict[int, list[dict[str, Any]]] = {}

    def reply(self, agent: int) -> bytes:
        """Agent ``agent``'s next reply (``DONE`` past the end; 404 for an unknown agent is
        the caller's job)."""
        k = self.next.get(agent, 0)
        replies = self.replies[agent]
        if k >= len(replies):
            return DONE
        self.next[agent] = k + 1
        return replies[k]

    def record(self, agent: int, body: bytes) -> None:
        doc = json.loads(body)
        self.seen.setdefault(agent, []).append(
            {
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "system": len(doc["system"]),
                "tools": len(doc["tools"]),
                "messages": len(doc["messages"]),
                "roles": [m.get("role") for m in doc["messages"][-3:] if isinstance(m, dict)],
            }
        )

    def route(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["v1", "stats"]:
            stats = {"requests": self.requests, "bytes_received": self.bytes_received}
            return 200, json.dumps(stats).encode()
        if len(parts) == 4 and parts[:2] == ["v1", "agents"] and parts[2].isdigit():
            agent = int(parts[2])
            if agent not in self.replies:
                return 404, b'{"error":"unknown agent"}'
            if method == "POST" and parts[3] == "messages":
                if body is not None:
                    self.record(agent, body)
                return 200, self.reply(agent)
            if method == "GET" and parts[3] == "requests":
                return 200, json.dumps(self.seen.get(agent, [])).encode()
        return 404, b'{"error":"not found"}'

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split()[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await self._body(reader, length)
                self.requests += 1
                self.bytes_received += length
                status, data = self.route(method, path, body)
                reason = "OK" if status == 200 else "Not Found"
                reply = (
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n"
                )
                writer.write(reply.encode() + data)
                await writer.drain()
        finally:
            writer.close()

    async def _body(self, reader: asyncio.StreamReader, length: int) -> bytes | None:
        """The body when checking; otherwise read and dropped (None)."""
        if self.check:
            return await reader.readexactly(length)
        left = length
        while left:
            got = await reader.read(min(left, READ_BYTES))
            if not got:
                raise ConnectionError("client went away mid-body")
            left -= len(got)
        return None


async def _serve(llm: MockLLM, port: int, started: asyncio.Future[int] | None) -> None:
    server = await asyncio.start_server(llm.serve_connection, "127.0.0.1", port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    if started is not None:
        started.set_result(bound)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def serving(llm: MockLLM) -> Iterator[int]:
    """Serve ``llm`` on a free port from a thread of this process; yields the port. For tests:
    the swarm runs the server as a process of its own (:func:`main`)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    task: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        started: asyncio.Future[int] = loop.create_future()

        def bound(f: asyncio.Future[int]) -> None:
            port.append(f.result())
            ready.set()

        started.add_done_callback(bound)
        task.append(loop.create_task(_serve(llm, 0, started)))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])
        # Connections still open: cancel their handlers, which close their sockets.
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    thread = threading.Thread(target=run, name="mock-llm", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the mock LLM did not start")
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(10)
        loop.close()


def main(argv: list[str] | None = None) -> int:
    """Serve ``--run-dir``'s ``turns.jsonl``; print ``port N`` once listening; stop when stdin
    closes."""
    p = argparse.ArgumentParser(description="agentmem swarm: the mock LLM server (internal)")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--check", action="store_true", help="parse and record every request")
    args = p.parse_args(argv)
    llm = MockLLM(load_replies(args.run_dir / "turns.jsonl"), check=args.check)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[int] = loop.create_future()
        serve = asyncio.create_task(_serve(llm, args.port, started))
        print(f"port {await started}", flush=True)
        # Stop when the orchestrator closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.buffer.read)
        serve.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serve

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
