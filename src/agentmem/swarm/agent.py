"""One swarm process: one or more agents, each a real loop against the mock LLM.

An agent holds a system prompt, its environment block, a tool catalogue and a growing
conversation. Each turn it builds the whole request body from them (``model``, ``system`` as
two text blocks: the product's prompt, then its environment block; ``tools``; ``messages``),
POSTs it to the mock LLM over HTTP on loopback, and appends the reply's assistant message and
the tool results that followed it in the recorded trajectory. Between turns it sits idle for an
exponentially distributed time whose mean differs per agent (see :func:`think_times`).

How each mode holds its data:

* ``plain``: ordinary Python objects, as agents hold them today: the prompt a ``str``, the tool
  catalogue a list of dicts (one per process, shared by its agents), the conversation a list of
  message dicts; the body is ``json.dumps(...).encode()``: materialised whole, every turn.
* ``ksm``: ``plain`` after ``prctl(PR_SET_MEMORY_MERGE, 1)``, so ksmd may merge any identical
  page of the process with any other's.
* ``agentmem``: the prompt and the catalogue are SMUs the launcher allocated once and
  published (``PROMPT_NAME``, ``TOOLS_NAME``); every agent opens the prompt in its handshake,
  whose reply brings its mapping, and the catalogue when it loads, and reads both as
  zero-copy views of shared segments. Its
  environment block is an SMU of its own (300 B, inline). The conversation is a
  :class:`~agentmem.client.conversation.Conversation` (messages stored as compact JSON; no
  local cache). SMUs hold the body's JSON text itself (the prompt as a JSON string literal),
  so the body is streamed: fixed JSON glue, the prompt's views, the catalogue's views, then
  the messages, each a view of the daemon's conversation segments
  (``Client.iter_message_views``: one request a turn, no copy but the kernel's into the
  socket, no list of views), with commas between them. The agent reports ``active`` for the
  turn and ``idle`` after it; the daemon's tiering policy demotes an idle agent's
  conversation to the warm tier once it has been idle longer than any of its gaps between
  turns (``run.Options.idle_warm_seconds``; ``--no-demote`` turns the rule off).

Each agent process runs this module through ``launch.py`` (loaded by its path, from its
bytecode), so that a ``plain`` process imports nothing of agentmem (the package's ``__init__``
loads the client); it imports only the standard library and, in ``agentmem`` mode, the
client. A minimal HTTP/1.1 client is used instead of ``http.client``,
which costs 5.9 MiB of PSS per process for its imports (the ``email`` package), here more than
the data of a ``corpus``-profile agent.

Control: JSON lines on stdin/stdout with the orchestrator (:mod:`agentmem.swarm.run`):
``started`` -> (connect) -> ``registered`` -> (prompt) -> ``spawned`` -> (load) -> ``ready``
-> (go) -> ``done`` -> (exit).

Several agents in one process (``--processes`` below the agent count: ``--tasks``) run as
asyncio tasks on one event loop, each with its own HTTP connection and, in ``agentmem`` mode,
its own asyncio client (``agentmem.aio``) on its own connection to the daemon, which is what
lets the daemon see each agent's state. An agent alone in its process plays in a thread and
imports no asyncio: an event loop for one agent would cost each process asyncio's imports
(8.7 MiB of PSS measured here, ssl and OpenSSL among them), more than a corpus agent's data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import string
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

# Not typing's: no mode's agent imports typing (~0.55 MiB a process), as the client does not.
TYPE_CHECKING = False

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator
    from typing import Any

    from agentmem.client import Client
    from agentmem.client.aio import AsyncClient
    from agentmem.client.conversation import Conversation
    from agentmem.ids import Handle

MODES = ("plain", "ksm", "agentmem")
#: Names the launcher publishes the prompt and the tool catalogue under (``agentmem``). An
#: agent opens the prompt in its handshake (part of its spawn) and the catalogue when it loads:
#: opened in the handshake too, the catalogue's ~200 views would be built in the spawn (+0.3 ms
#: in a fresh process, seed profile).
PROMPT_NAME = "swarm/system-prompt"
TOOLS_NAME = "swarm/tools"
#: ``prctl`` option that makes every anonymous mapping of the process mergeable (Linux 6.4).
PR_SET_MEMORY_MERGE = 67
#: Pieces of the body go out in one ``sendmsg`` (scatter/gather: no join in the agent) per
#: this many buffers, well under the kernel's IOV_MAX of 1024, or per SEND_BYTES of them.
SEND_BUFFERS = 512
SEND_BYTES = 1 << 20
#: Messages sent to the daemon per ``extend`` while loading a history: ~120 KiB a request,
#: under glibc's mmap threshold, so the request buffers leave no heap behind.
LOAD_BATCH = 64
#: Keys whose string values are prose: the only ones a letter permutation touches (roles, tool
#: names and ids keep their meaning).
PROSE_KEYS = frozenset(
    {"content", "text", "reasoning", "thinking", "value", "output", "observation", "thought"}
)

BODY_HEAD = b'{"model":"swarm-mock","max_tokens":4096,"system":[{"type":"text","text":'
BODY_ENV = b'},{"type":"text","text":'
BODY_TOOLS = b'}],"tools":'
BODY_MESSAGES = b',"messages":['
BODY_END = b"]}"
GLUE_BYTES = len(BODY_HEAD) + len(BODY_ENV) + len(BODY_TOOLS) + len(BODY_MESSAGES) + len(BODY_END)


def compact(value: object) -> bytes:
    """The JSON the swarm sends and stores: compact, keys in order, UTF-8 kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def request_body(prompt: str, env: str, tools: object, messages: Sequence[object]) -> bytes:
    """The whole request body, materialised: what ``plain`` agents send."""
    return compact(
        {
            "model": "swarm-mock",
            "max_tokens": 4096,
            "system": [{"type": "text", "text": prompt}, {"type": "text", "text": env}],
            "tools": tools,
            "messages": messages,
        }
    )


# --- per-agent text ----------------------------------------------------------------------------


def letter_table(seed: int) -> dict[int, int]:
    """A ``str.translate`` table permuting a-z (and A-Z alike) by ``seed``."""
    letters = list(string.ascii_lowercase)
    random.Random(seed).shuffle(letters)
    perm = "".join(letters)
    return str.maketrans(string.ascii_lowercase + string.ascii_uppercase, perm + perm.upper())


def permuted(value: Any, table: dict[int, int], prose: bool = False) -> Any:
    """``value`` with the strings under :data:`PROSE_KEYS` translated by ``table`` (a new
    object; ``value`` is not changed)."""
    if isinstance(value, str):
        return value.translate(table) if prose else value
    if isinstance(value, dict):
        return {k: permuted(v, table, prose or k in PROSE_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [permuted(v, table, prose) for v in value]
    return value


def history(run_dir: Path, spec: dict[str, Any]) -> Iterator[Any]:
    """An agent's history, message by message, as ``agents.jsonl`` describes it: ``lines``
    messages, or messages until ``bytes`` (wrapping at the end of the pool), from ``offset`` of
    ``history.jsonl``; prose permuted by ``permute`` when it is set."""
    table = letter_table(spec["permute"]) if spec.get("permute") is not None else None
    lines, budget = spec.get("lines"), spec.get("bytes")
    taken = size = 0
    with open(run_dir / "history.jsonl", "rb") as f:
        f.seek(spec["offset"])
        wrapped = False
        while (lines is None or taken < lines) and (budget is None or size < budget):
            line = f.readline()
            if not line:
                if wrapped or budget is None:
                    return
                f.seek(0)
                wrapped = True
                continue
            msg = json.loads(line)
            taken += 1
            size += len(line) - 1
            yield permuted(msg, table) if table is not None else msg


def think_times(index: int, mean: float, turns: int, seed: int = 11) -> list[float]:
    """The idle gaps of agent ``index`` before each of its turns, in seconds.

    Each agent has its own mean gap, ``mean * 2**u`` with ``u`` uniform in [-1, 1] (so rates
    differ up to 4x across agents); gaps are exponential around it (as waits on a busy model
    are), capped at 4x that mean; the first gap is uniform in [0, mean] so agents start
    staggered.
    """
    rng = random.Random(seed * 1_000_003 + index)
    own = mean * 2 ** rng.uniform(-1.0, 1.0)
    gaps = [rng.uniform(0.0, own)]
    gaps += [min(4 * own, rng.expovariate(1 / own)) if own > 0 else 0.0 for _ in range(turns - 1)]
    return gaps


# --- HTTP --------------------------------------------------------------------------------------


def _request_head(method: str, path: str, host: str, length: int) -> bytes:
    """The request line and headers of a JSON body of ``length`` bytes."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _status(line: bytes) -> int:
    """The status code of a response's first line."""
    parts = line.split()
    if len(parts) < 2:
        raise ConnectionError("the mock LLM closed the connection")
    return int(parts[1])


class Http:
    """A minimal HTTP/1.1 client on one keep-alive loopback connection. Not thread-safe."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.host = host

    def request(
        self, method: str, path: str, pieces: Iterable[bytes | memoryview] = (), length: int = 0
    ) -> tuple[int, bytes]:
        """Send the request with a body of ``length`` bytes made of ``pieces`` (sent as they
        come; small ones gathered); return the status and the response body."""
        head = _request_head(method, path, self.host, length)
        sent = 0
        pending: list[bytes | memoryview] = [head]
        pending_bytes = len(head)
        for piece in pieces:
            n = len(piece) if isinstance(piece, bytes) else piece.nbytes
            sent += n
            pending.append(piece)
            pending_bytes += n
            if len(pending) >= SEND_BUFFERS or pending_bytes >= SEND_BYTES:
                self._send(pending)
                pending, pending_bytes = [], 0
        if pending:
            self._send(pending)
        if sent != length:
            raise RuntimeError(f"body was {sent} bytes, Content-Length said {length}")
        status = _status(self.rfile.readline())
        size = 0
        while True:
            line = self.rfile.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                size = int(value)
        return status, self.rfile.read(size)

    def _send(self, buffers: list[bytes | memoryview]) -> None:
        """All of ``buffers``, in order, with as few ``sendmsg`` calls as the socket allows."""
        views = [memoryview(b) for b in buffers]
        while views:
            n = self.sock.sendmsg(views)
            while views and n >= views[0].nbytes:
                n -= views[0].nbytes
                views.pop(0)
            if n:
                views[0] = views[0][n:]

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class AsyncHttp:
    """:class:`Http` on asyncio streams, for agents that share a process as tasks."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> AsyncHttp:
        import asyncio

        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, host)

    async def request(
        self, method: str, path: str, pieces: AsyncIterator[bytes | memoryview], length: int
    ) -> tuple[int, bytes]:
        """As :meth:`Http.request`, the pieces coming from an async iterator; the transport
        is drained every SEND_BYTES, so what it buffers stays bounded."""
        writer = self.writer
        writer.write(_request_head(method, path, self.host, length))
        sent = pending = 0
        async for piece in pieces:
            n = len(piece) if isinstance(piece, bytes) else piece.nbytes
            sent += n
            pending += n
            writer.write(piece)
            if pending >= SEND_BYTES:
                await writer.drain()
                pending = 0
        await writer.drain()
        if sent != length:
            raise RuntimeError(f"body was {sent} bytes, Content-Length said {length}")
        status = _status(await self.reader.readline())
        size = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                size = int(value)
        return status, await self.reader.readexactly(size)

    def close(self) -> None:
        self.writer.close()


# --- agents ------------------------------------------------------------------------------------


class Shared:
    """What the agents of one process share: the run directory's prompt and catalogue, loaded
    once (``plain``/``ksm``), and the daemon's socket (``agentmem``)."""

    def __init__(self, run_dir: Path, socket_path: str, port: int) -> None:
        self.run_dir = run_dir
        self.socket_path = socket_path
        self.port = port
        self._prompt: str | None = None
        self._tools: list[Any] | None = None

    def prompt(self) -> str:
        if self._prompt is None:
            self._prompt = (self.run_dir / "prompt.txt").read_text()
        return self._prompt

    def tools(self) -> list[Any]:
        if self._tools is None:
            self._tools = json.loads((self.run_dir / "tools.json").read_bytes())
        return self._tools


class TurnGate:
    """The orchestrator's turn gate (``run.Gate``): a FIFO of tokens; ``with gate:`` takes one
    (blocking until another agent puts one back) and returns it. Thread-safe: each read and
    write of one byte is atomic on a pipe. Raises ``RuntimeError`` if the orchestrator that
    started this process has gone (the FIFO, open read-write here, would never say EOF)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR)
        self._parent = os.getppid()

    def __enter__(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd], [], [], 1.0)
            if ready and os.read(self.fd, 1) == b"t":
                return
            if os.getppid() != self._parent:
                raise RuntimeError("the orchestrator went away while this agent waited")

    def __exit__(self, *exc: object) -> None:
        os.write(self.fd, b"t")


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncTurnGate:
    """:class:`TurnGate` for tasks: ``async with gate:``. One task of the process at a time
    waits on the FIFO (an event loop watches an fd for one reader), the others behind it."""

    def __init__(self, path: Path) -> None:
        import asyncio

        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._parent = os.getppid()
        self._waiting = asyncio.Lock()

    async def __aenter__(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        async with self._waiting:
            while True:
                try:
                    if os.read(self.fd, 1) == b"t":
                        return
                except BlockingIOError:
                    pass  # no token now (another process took it): wait for the next
                readable: asyncio.Future[None] = loop.create_future()
                loop.add_reader(self.fd, _set_once, readable)
                try:
                    await asyncio.wait_for(readable, 1.0)
                except TimeoutError:
                    if os.getppid() != self._parent:
                        raise RuntimeError(
                            "the orchestrator went away while this agent waited"
                        ) from None
                finally:
                    loop.remove_reader(self.fd)

    async def __aexit__(self, *exc: object) -> None:
        os.write(self.fd, b"t")


class Agent:
    """One agent: its loop, timings and errors. Subclasses hold the data."""

    def __init__(self, shared: Shared, spec: dict[str, Any]) -> None:
        self.shared = shared
        self.index: int = spec["agent"]
        self.name = f"swarm-{self.index:04d}"
        self.spec = spec
        self.http: Http | None = None
        self.ahttp: AsyncHttp | None = None
        self.spawn_s = 0.0
        self.turn_s: list[float] = []
        self.body_bytes: list[int] = []
        self.error: str | None = None

    # Phases, in order; each subclass fills them in.
    def connect(self) -> None:
        """Register with the daemon (agentmem only)."""

    def load_prompt(self) -> None:
        """Read the system prompt for the first time (timed: part of the spawn)."""
        raise NotImplementedError

    def load(self) -> None:
        """Environment block, tool catalogue and history."""
        raise NotImplementedError

    def body(self) -> tuple[Iterable[bytes | memoryview], int]:
        """This turn's request body as pieces, and its length."""
        raise NotImplementedError

    def append(self, messages: list[Any]) -> None:
        raise NotImplementedError

    def activity(self, active: bool) -> None:
        """Tell the daemon the agent is (in)active (agentmem only)."""

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def turn(self) -> bool:
        """One request and its reply, appended (the agent has said it is active); False once
        the trajectory is over."""
        t0 = time.perf_counter()
        pieces, length = self.body()
        assert self.http is not None
        messages = self._answered(*self.http.request("POST", self._path, pieces, length))
        if messages is None:
            return False
        self.append(messages)
        self._played(t0, length)
        return True

    @property
    def _path(self) -> str:
        return f"/v1/agents/{self.index}/messages"

    @staticmethod
    def _answered(status: int, data: bytes) -> list[Any] | None:
        """What the mock LLM's answer adds to the conversation (its assistant message and the
        tool results after it); None once the trajectory is over."""
        if status != 200:
            raise RuntimeError(f"mock LLM answered {status}: {data[:200]!r}")
        reply = json.loads(data)
        if reply.get("done"):
            return None
        return [reply["message"], *reply["results"]]

    def _played(self, t0: float, length: int) -> None:
        self.turn_s.append(time.perf_counter() - t0)
        self.body_bytes.append(length)

    def run(self, turns: int, think: float, gate: TurnGate | None = None) -> None:
        """Play up to ``turns`` turns, idle between them, each inside ``gate`` when there is
        one. Errors are kept, not raised."""
        try:
            self.http = Http(self.shared.port)
            for gap in think_times(self.index, think, turns):
                time.sleep(gap)  # the agent's idle time (a simulated wait on the model)
                # Busy from here on: waiting for the gate is waiting for a model slot, not
                # idleness (the daemon would demote an idle agent's conversation meanwhile).
                self.activity(True)
                if gate is None:
                    more = self.turn()
                else:
                    with gate:
                        more = self.turn()
                self.activity(False)
                if not more:
                    break
        except Exception as exc:  # reported to the orchestrator, which fails the mode
            self.error = f"{type(exc).__name__}: {exc}"

    # The same phases for an agent that plays as an asyncio task (``--tasks``): by default
    # the data work above, with the HTTP and the waits on the event loop.
    async def aconnect(self) -> None:
        self.connect()

    async def aload_prompt(self) -> None:
        self.load_prompt()

    async def aload(self) -> None:
        self.load()

    async def abody(self) -> tuple[AsyncIterator[bytes | memoryview], int]:
        pieces, length = self.body()
        return _aiter(pieces), length

    async def aappend(self, messages: list[Any]) -> None:
        self.append(messages)

    async def aactivity(self, active: bool) -> None:
        self.activity(active)

    async def aclose(self) -> None:
        if self.ahttp is not None:
            self.ahttp.close()

    async def aturn(self) -> bool:
        """:meth:`turn` as a task."""
        t0 = time.perf_counter()
        pieces, length = await self.abody()
        assert self.ahttp is not None
        messages = self._answered(*await self.ahttp.request("POST", self._path, pieces, length))
        if messages is None:
            return False
        await self.aappend(messages)
        self._played(t0, length)
        return True

    async def arun(self, turns: int, think: float, gate: AsyncTurnGate | None = None) -> None:
        """:meth:`run` as a task."""
        import asyncio

        try:
            self.ahttp = await AsyncHttp.open(self.shared.port)
            for gap in think_times(self.index, think, turns):
                await asyncio.sleep(gap)
                await self.aactivity(True)
                if gate is None:
                    more = await self.aturn()
                else:
                    async with gate:
                        more = await self.aturn()
                await self.aactivity(False)
                if not more:
                    break
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"


async def _aiter(pieces: Iterable[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
    for piece in pieces:
        yield piece


class PlainAgent(Agent):
    """Everything in ordinary Python objects (``plain`` and ``ksm``)."""

    def __init__(self, shared: Shared, spec: dict[str, Any]) -> None:
        super().__init__(shared, spec)
        self.prompt = ""
        self.env = ""
        self.tools: list[Any] = []
        self.messages: list[Any] = []

    def load_prompt(self) -> None:
        t0 = time.perf_counter()
        self.prompt = self.shared.prompt()
        self.spawn_s = time.perf_counter() - t0

    def load(self) -> None:
        self.env = self.spec["env"]
        self.tools = self.shared.tools()
        self.messages = list(history(self.shared.run_dir, self.spec["history"]))

    def body(self) -> tuple[Iterable[bytes | memoryview], int]:
        body = request_body(self.prompt, self.env, self.tools, self.messages)
        return [body], len(body)

    def append(self, messages: list[Any]) -> None:
        self.messages.extend(messages)


class AgentmemAgent(Agent):
    """Prompt and tools as shared SMUs, the conversation a ``Conversation``."""

    def __init__(self, shared: Shared, spec: dict[str, Any]) -> None:
        super().__init__(shared, spec)
        self.client: Client | None = None
        self.conv: Conversation | None = None
        self.aclient: AsyncClient | None = None
        self.chat: Handle | None = None  # the conversation, as a task (no Conversation)
        self.tools_handle: Handle | None = None
        self.prompt: list[memoryview] = []
        self.env: bytes = b""
        self.tools: list[memoryview] = []
        self.fixed = 0  # bytes of the body besides the messages
        self.count = 0  # messages in the conversation
        self.msg_bytes = 0  # their stored bytes
        self._conn_s = 0.0

    def connect(self) -> None:
        import agentmem

        t0 = time.perf_counter()
        self.client = agentmem.connect(
            self.shared.socket_path, name=self.name, autostart=False, open=[PROMPT_NAME]
        )
        self._conn_s = time.perf_counter() - t0

    def load_prompt(self) -> None:
        client = self.client
        assert client is not None
        t0 = time.perf_counter()
        self.prompt = client.views(client.opened[PROMPT_NAME])  # came with the handshake
        self.prompt[0][0]  # first byte touched: the segment is mapped and readable
        self.spawn_s = self._conn_s + time.perf_counter() - t0

    def load(self) -> None:
        from agentmem.client.conversation import Conversation

        client = self.client
        assert client is not None
        self.tools_handle = client.open(TOOLS_NAME)
        self.tools = client.views(self.tools_handle)
        env_handle = client.alloc_smu("system_prompt", compact(self.spec["env"]))
        self.env = bytes(client.read(env_handle))
        self.fixed = GLUE_BYTES + len(self.env)
        self.fixed += sum(v.nbytes for v in self.prompt) + sum(v.nbytes for v in self.tools)
        # No local cache: every turn reads the history as views of the daemon's segments.
        self.conv = Conversation(client, client.alloc_smu("conversation", []), cache_bytes=0)
        batch: list[Any] = []
        for msg in history(self.shared.run_dir, self.spec["history"]):
            batch.append(msg)
            if len(batch) >= LOAD_BATCH:
                self.append(batch)
                batch = []
        if batch:
            self.append(batch)
        self.activity(False)

    def _track(self, raws: list[bytes]) -> None:
        """Keep count of the messages and of their stored bytes (the body's length)."""
        self.count += len(raws)
        self.msg_bytes += sum(len(raw) for raw in raws)

    def append(self, messages: list[Any]) -> None:
        assert self.conv is not None
        self.conv.extend(messages)
        self._track([compact(m) for m in messages])

    def activity(self, active: bool) -> None:
        client = self.client
        assert client is not None and self.conv is not None
        client.set_state("active" if active else "idle")

    def _messages(self) -> Iterator[bytes | memoryview]:
        """The messages, comma-separated: one view per message of the daemon's segments (one
        request for the whole history), each but the first after a comma."""
        client, conv = self.client, self.conv
        assert client is not None and conv is not None
        i = -1
        for i, view in enumerate(client.iter_message_views(conv.handle, 0, self.count)):
            if i:
                yield b","
            yield view
        if i + 1 != self.count:
            raise RuntimeError(f"{i + 1} messages read back, {self.count} appended")

    def body(self) -> tuple[Iterable[bytes | memoryview], int]:
        length = self.fixed + self.msg_bytes + max(0, self.count - 1)

        def pieces() -> Iterator[bytes | memoryview]:
            yield BODY_HEAD
            yield from self.prompt
            yield BODY_ENV
            yield self.env
            yield BODY_TOOLS
            yield from self.tools
            yield BODY_MESSAGES
            yield from self._messages()
            yield BODY_END

        return pieces(), length

    def close(self) -> None:
        super().close()
        if self.client is not None:
            self.client.close()

    # As a task: the asyncio client, on a connection of its own. The conversation is the
    # handle itself (``Conversation`` is the sync client's), extended with the same compact
    # JSON it would store.
    async def aconnect(self) -> None:
        import agentmem.aio

        t0 = time.perf_counter()
        self.aclient = await agentmem.aio.connect(
            self.shared.socket_path, name=self.name, autostart=False, open=[PROMPT_NAME]
        )
        self._conn_s = time.perf_counter() - t0

    async def aload_prompt(self) -> None:
        client = self.aclient
        assert client is not None
        t0 = time.perf_counter()
        self.prompt = await client.views(client.opened[PROMPT_NAME])
        self.prompt[0][0]  # first byte touched: the segment is mapped and readable
        self.spawn_s = self._conn_s + time.perf_counter() - t0

    async def aload(self) -> None:
        client = self.aclient
        assert client is not None
        self.tools_handle = await client.open(TOOLS_NAME)
        self.tools = await client.views(self.tools_handle)
        env_handle = await client.alloc_smu("system_prompt", compact(self.spec["env"]))
        self.env = bytes(await client.read(env_handle))
        self.fixed = GLUE_BYTES + len(self.env)
        self.fixed += sum(v.nbytes for v in self.prompt) + sum(v.nbytes for v in self.tools)
        self.chat = await client.alloc_smu("conversation", [])
        batch: list[Any] = []
        for msg in history(self.shared.run_dir, self.spec["history"]):
            batch.append(msg)
            if len(batch) >= LOAD_BATCH:
                await self.aappend(batch)
                batch = []
        if batch:
            await self.aappend(batch)
        await self.aactivity(False)

    async def aappend(self, messages: list[Any]) -> None:
        assert self.aclient is not None and self.chat is not None
        raws = [compact(m) for m in messages]
        await self.aclient.extend(self.chat, raws)
        self._track(raws)

    async def aactivity(self, active: bool) -> None:
        assert self.aclient is not None
        await self.aclient.set_state("active" if active else "idle")

    async def abody(self) -> tuple[AsyncIterator[bytes | memoryview], int]:
        client, chat = self.aclient, self.chat
        assert client is not None and chat is not None
        length = self.fixed + self.msg_bytes + max(0, self.count - 1)

        async def pieces() -> AsyncIterator[bytes | memoryview]:
            yield BODY_HEAD
            for view in self.prompt:
                yield view
            yield BODY_ENV
            yield self.env
            yield BODY_TOOLS
            for view in self.tools:
                yield view
            yield BODY_MESSAGES
            n = 0
            async for view in client.iter_message_views(chat, 0, self.count):
                if n:
                    yield b","
                yield view
                n += 1
            if n != self.count:
                raise RuntimeError(f"{n} messages read back, {self.count} appended")
            yield BODY_END

        return pieces(), length

    async def aclose(self) -> None:
        await super().aclose()
        if self.aclient is not None:
            await self.aclient.close()


AGENTS: dict[str, type[Agent]] = {"plain": PlainAgent, "ksm": PlainAgent, "agentmem": AgentmemAgent}


# --- the process -------------------------------------------------------------------------------


def enable_ksm() -> None:
    """Make this process's anonymous memory mergeable by ksmd (``OSError`` if refused)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_MEMORY_MERGE): {os.strerror(err)}")


def import_mode(mode: str, tasks: bool = False) -> None:
    """Import what ``mode``'s agents import, as threads or (``tasks``) as asyncio tasks (the
    idle baseline must carry the same)."""
    if mode == "ksm":
        import ctypes  # noqa: F401
    if tasks:
        import asyncio  # noqa: F401
    if mode == "agentmem":
        import agentmem
        import agentmem.client.conversation

        if tasks:
            import agentmem.aio  # noqa: F401


def status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Control:
    """JSON lines with the orchestrator: one line per message, each way."""

    def __init__(self) -> None:
        self._in = sys.stdin.buffer

    def send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]

    def recv(self) -> dict[str, Any]:
        line = self._in.readline()
        if not line:
            raise SystemExit(0)  # the orchestrator went away: nothing left to report to
        msg: dict[str, Any] = json.loads(line)
        return msg


def _ms(values: list[float]) -> list[float]:
    return [round(v * 1000, 3) for v in values]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="agentmem swarm: one agent process (internal)")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--agents", default="", help="comma-separated agent indices")
    p.add_argument("--socket", default="")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--think", type=float, default=0.5)
    p.add_argument("--gate", type=Path, help="the turn gate's FIFO (at most K turns at once)")
    p.add_argument("--idle", action="store_true", help="import as an agent would, then sit idle")
    p.add_argument("--tasks", action="store_true", help="play the agents as asyncio tasks")
    args = p.parse_args(argv)
    ctl = Control()
    if args.mode == "ksm" and not args.idle:
        try:
            enable_ksm()
        except OSError as exc:
            ctl.send({"event": "error", "error": str(exc)})
            return 1
    import_mode(args.mode, args.tasks)
    if args.idle:
        ctl.send({"event": "ready"})
        ctl.recv()
        return 0
    wanted = {int(x) for x in args.agents.split(",") if x}
    specs = []
    with open(args.run_dir / "agents.jsonl", "rb") as f:
        for line in f:
            spec = json.loads(line)
            if spec["agent"] in wanted:
                specs.append(spec)
    shared = Shared(args.run_dir, args.socket, args.port)
    agents = [AGENTS[args.mode](shared, spec) for spec in specs]
    if args.tasks:
        import asyncio

        asyncio.run(_play_as_tasks(args, ctl, agents))
        return 0
    ctl.send({"event": "started"})
    ctl.recv()  # connect: the orchestrator spawns one process at a time
    for a in agents:
        a.connect()
    ctl.send({"event": "registered", "names": [a.name for a in agents]})
    ctl.recv()  # prompt
    for a in agents:
        a.load_prompt()
    ctl.send({"event": "spawned", "spawn_ms": _ms([a.spawn_s for a in agents])})
    ctl.recv()  # load
    t0 = time.perf_counter()
    for a in agents:
        a.load()
    ctl.send({"event": "ready", "load_s": round(time.perf_counter() - t0, 3)})
    ctl.recv()  # go
    gate = TurnGate(args.gate) if args.gate is not None else None
    # Without --tasks a process holds one agent, and it plays in a thread, not the main one.
    # Measured at the seed profile: in the main thread a plain agent keeps ~23 MiB more
    # (glibc's main arena holds on to what its 45 MB bodies leave) and an agentmem one
    # ~0.75 MiB less (no second arena); the baseline must not move with the harness, so every
    # mode keeps the shape the figures were taken in.
    threads = [
        threading.Thread(target=a.run, args=(args.turns, args.think, gate), name=a.name)
        for a in agents
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctl.send(_done(agents))
    ctl.recv()  # exit
    for a in agents:
        a.close()
    return 0


async def _play_as_tasks(args: argparse.Namespace, ctl: Control, agents: list[Agent]) -> None:
    """:func:`main`'s phases with the agents as tasks of one event loop. The control channel
    is read blocking: between phases no task runs."""
    import asyncio

    ctl.send({"event": "started"})
    ctl.recv()  # connect
    for a in agents:
        await a.aconnect()
    ctl.send({"event": "registered", "names": [a.name for a in agents]})
    ctl.recv()  # prompt
    for a in agents:
        await a.aload_prompt()
    ctl.send({"event": "spawned", "spawn_ms": _ms([a.spawn_s for a in agents])})
    ctl.recv()  # load
    t0 = time.perf_counter()
    for a in agents:
        await a.aload()
    ctl.send({"event": "ready", "load_s": round(time.perf_counter() - t0, 3)})
    ctl.recv()  # go
    gate = AsyncTurnGate(args.gate) if args.gate is not None else None
    await asyncio.gather(*(a.arun(args.turns, args.think, gate) for a in agents))
    ctl.send(_done(agents))
    ctl.recv()  # exit
    for a in agents:
        await a.aclose()


def _done(agents: list[Agent]) -> dict[str, Any]:
    return {
        "event": "done",
        "turn_ms": [_ms(a.turn_s) for a in agents],
        "body_bytes": [a.body_bytes[-1] if a.body_bytes else 0 for a in agents],
        "errors": [f"{a.name}: {a.error}" for a in agents if a.error],
        "peak_rss_bytes": status_bytes("VmHWM"),
    }


if __name__ == "__main__":
    sys.exit(main())
