"""Deferred replies: a whole-domain statistics walk runs in slices between other requests.

The server here is a real :class:`Server` on a real socket, driven one step at a time by the
test (its accept, read and job methods) instead of by its loop, so what is served before the
walk ends is decided by the test, not by the scheduler.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmem.client.client import Client
from agentmem.config import Config
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.server import Connection, Server
from agentmem.daemon.service import Deferred, Service, Session
from agentmem.errors import UnknownAgent
from agentmem.protocol import messages as m
from agentmem.stats import StoreStats, agent_stats_from_wire, store_stats_from_wire
from agentmem.store import steps
from agentmem.store import store as store_module
from agentmem.store.store import Store
from tests.conftest import step_through
from tests.daemon.conftest import RawPeer

#: Messages of the test's conversations: a walk of several thousand records, many steps.
MESSAGES = 3000


class Driven:
    """A server whose loop the test turns by hand."""

    def __init__(self, tmp_path: Path, config: Config | None = None) -> None:
        self.service = Service(config or Config())
        path = str(tmp_path / "s.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        self.server = Server(self.service, listener)
        self.server.job_slice = 0.0  # one step of a walk per turn
        self.path = path
        self.ids = itertools.count(1)
        self.peers: list[RawPeer] = []

    def connect(self, name: str) -> tuple[RawPeer, Connection]:
        peer = RawPeer(self.path)
        self.peers.append(peer)
        before = set(self.server.connections)
        self.server._accept()
        (fd,) = set(self.server.connections) - before
        conn = self.server.connections[fd]
        peer.send_msg(m.request(m.OP_HELLO, 0, version=m.PROTOCOL_VERSION, name=name))
        self.server._read(conn)
        assert "error" not in peer.reply()
        return peer, conn

    def call(self, session: Session, op: str, **args: object) -> object:
        """A request served directly (no socket): to fill the store quickly."""
        reply = self.service.handle(session, {"id": next(self.ids), "op": op, **args}, ())
        assert isinstance(reply, Deferred) or "error" not in reply.body, reply.body
        return reply.body["ok"]

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.server.close()


@pytest.fixture
def driven(tmp_path: Path) -> Iterator[Driven]:
    d = Driven(tmp_path)
    yield d
    d.close()


def readable(peer: RawPeer) -> bool:
    return bool(peer.pending) or bool(select.select([peer.sock], [], [], 0)[0])


def fill(d: Driven, conn: Connection, tag: str) -> int:
    chat = d.call(conn.session, "alloc_smu", type="conversation", messages=[])
    assert isinstance(chat, int)
    d.call(
        conn.session,
        "append",
        handle=chat,
        messages=[
            b'{"role":"user","content":"%s %d"}' % (tag.encode(), i) for i in range(MESSAGES)
        ],
    )
    return chat


def test_a_walk_does_not_hold_other_connections_and_keeps_its_own_order(
    driven: Driven,
) -> None:
    a, conn_a = driven.connect("walker")
    b, conn_b = driven.connect("other")
    chat = fill(driven, conn_a, "a")
    fill(driven, conn_b, "b")
    other = fill(driven, conn_b, "b2")
    store = driven.service.domains[os.getuid()].store

    a.send_msg(m.request(m.OP_GET_STATS, 1, agent=None))
    driven.server._read(conn_a)
    assert driven.server._jobs and not readable(a)  # the walk has begun, not ended

    # Another connection is answered while the walk is in progress.
    b.send_msg(m.request("length", 7, handle=other))
    driven.server._read(conn_b)
    assert readable(b) and b.reply() == {"id": 7, "ok": MESSAGES}
    assert driven.server._jobs and not readable(a)

    # The walker's next request waits behind its walk: replies keep the order of requests.
    a.send_msg(m.request("length", 2, handle=chat))
    driven.server._read(conn_a)
    assert not readable(a)

    turns = 0
    while driven.server._jobs:
        driven.server._run_job()
        turns += 1
    assert turns > 10  # many slices, each between other requests
    first, second = a.reply(), a.reply()
    assert first["id"] == 1 and second == {"id": 2, "ok": MESSAGES}
    walked = store_stats_from_wire(first["ok"])  # type: ignore[arg-type]
    assert walked == store.get_stats()  # nothing changed meanwhile: the same figures
    assert walked.messages == 3 * MESSAGES
    assert {s.name: s.unique_bytes for s in walked.per_agent}["walker"] > 0


def test_a_walk_of_a_closed_connection_is_dropped(driven: Driven) -> None:
    a, conn_a = driven.connect("walker")
    b, conn_b = driven.connect("other")
    fill(driven, conn_a, "a")
    a.send_msg(m.request(m.OP_GET_STATS, 1, agent=None))
    a.send_msg(m.request("length", 2, handle=12345))  # queued behind the walk
    driven.server._read(conn_a)
    assert driven.server._jobs and conn_a.blocked is not None and len(conn_a.blocked) == 1
    a.close()
    driven.server._read(conn_a)  # EOF: the connection goes, and its walk with it
    assert not driven.server._jobs and conn_a.blocked is None
    assert conn_a.sock.fileno() < 0
    b.send_msg(m.request(m.OP_GET_STATS, 3, agent="other"))
    driven.server._read(conn_b)
    while driven.server._jobs:  # one agent's statistics take steps too (a few here)
        driven.server._run_job()
    assert b.reply()["id"] == 3


def test_two_walks_take_turns(driven: Driven) -> None:
    a, conn_a = driven.connect("one")
    b, conn_b = driven.connect("two")
    fill(driven, conn_a, "a")
    a.send_msg(m.request(m.OP_GET_STATS, 1, agent=None, daemon=True))
    driven.server._read(conn_a)
    b.send_msg(m.request(m.OP_GET_STATS, 2, agent=None))
    driven.server._read(conn_b)
    assert len(driven.server._jobs) == 2
    driven.server._run_job()
    driven.server._run_job()
    assert len(driven.server._jobs) == 2  # each had a slice, neither is done
    while driven.server._jobs:
        driven.server._run_job()
    one, two = a.reply(), b.reply()
    assert one["id"] == 1 and two["id"] == 2
    first = store_stats_from_wire(one["ok"])  # type: ignore[arg-type]
    assert first.daemon is not None  # finished with the daemon section it asked for
    assert first.per_agent == store_stats_from_wire(two["ok"]).per_agent  # type: ignore[arg-type]


def test_one_agents_statistics_come_in_steps_too(driven: Driven) -> None:
    a, conn_a = driven.connect("walker")
    b, conn_b = driven.connect("other")
    fill(driven, conn_b, "b")  # 3,000 messages: many steps of its own records
    a.send_msg(m.request(m.OP_GET_STATS, 1, agent="other"))
    driven.server._read(conn_a)
    assert driven.server._jobs and not readable(a)
    b.send_msg(m.request(m.OP_GET_STATS, 2, agent="nobody"))  # refused at once, not deferred
    driven.server._read(conn_b)
    assert b.reply()["err"] == UnknownAgent.code
    while driven.server._jobs:
        driven.server._run_job()
    got = agent_stats_from_wire(a.reply()["ok"])  # type: ignore[arg-type]
    store = driven.service.domains[os.getuid()].store
    assert got == store.get_stats("other") and got.unique_bytes == got.logical_bytes > 0


def test_a_small_walk_is_answered_at_once(driven: Driven) -> None:
    driven.server.job_slice = 1.0  # the default is 2 ms; a few records take microseconds
    a, conn_a = driven.connect("walker")
    a.send_msg(m.request(m.OP_GET_STATS, 1, agent=None))
    driven.server._read(conn_a)
    assert not driven.server._jobs and readable(a)
    assert store_stats_from_wire(a.reply()["ok"]).agents == 1  # type: ignore[arg-type]


def test_the_walk_survives_changes_between_its_steps() -> None:
    """Appends, releases (nodes freed), demotions and new agents between steps: the walk
    ends with figures for the agents it began with and the counters as they are at the end."""
    store = Store()
    for name in ("a", "b", "c"):
        store.register_agent(name)
    chats = {}
    for name in ("a", "b"):
        chats[name] = store.alloc_smu("conversation", [], name)
        store.extend(chats[name], [b'{"m":"%s %d"}' % (name.encode(), i) for i in range(2000)])
    fork = store.fork(chats["a"])
    prompt = store.alloc_smu("system_prompt", b"p" * 50_000, "c")
    store.share_content(prompt, "a")
    stats, turns, _ = step_through(
        store.get_stats_steps(),
        [
            lambda: store.extend(chats["b"], [b'{"m":"more %d"}' % i for i in range(300)]),
            lambda: store.release(chats["a"]),  # the fork still holds the history
            lambda: store.demote(fork),
            lambda: store.release(fork),  # now every node of a's history is freed
            lambda: store.register_agent("d"),
            lambda: store.release(prompt),
        ],
    )
    assert turns > 6  # every change came between two steps
    assert [s.name for s in stats.per_agent] == ["a", "b", "c"]
    assert stats.agents == 4 and stats.messages == store.get_stats().messages
    for s in stats.per_agent:
        assert s.unique_bytes is not None and s.unique_bytes >= 0
        assert s.shared_bytes is not None and s.shared_bytes >= 0
    assert steps.run(store.get_stats_steps()) == store.get_stats()


def test_the_in_process_transport_runs_a_long_walk_to_its_end() -> None:
    """In-process, the caller's thread runs the walk slice by slice (the service's lock is
    free between slices) and gets the whole result."""
    service = Service(Config())
    with Client(InProcessTransport(service), name="walker") as client:
        for tag in ("a", "b", "c"):
            chat = client.conversation()
            chat.extend({"role": "user", "content": f"{tag} {i}"} for i in range(MESSAGES))
        walk = service.domains[os.getuid()].store.get_stats_steps()
        assert sum(1 for _ in itertools.islice(walk, 20)) == 20  # more than a slice's work
        stats = client.get_stats()
        assert isinstance(stats, StoreStats)
        assert stats.messages == 3 * MESSAGES
        assert stats == service.domains[os.getuid()].store.get_stats()
    service.close_all()


def test_a_demoted_history_is_read_back_in_steps_between_other_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "PROMOTE_STEP_BYTES", 16 << 10)  # many steps
    driven = Driven(tmp_path, Config(warm_group_bytes=16 << 10))
    try:
        _read_back_in_steps(driven)
    finally:
        driven.close()


def _read_back_in_steps(driven: Driven) -> None:
    a, conn_a = driven.connect("reader")
    b, conn_b = driven.connect("other")
    chat = fill(driven, conn_a, "a")
    other = fill(driven, conn_b, "b")
    store = driven.service.domains[os.getuid()].store
    expected = [bytes(v) for v in store.messages(chat)]
    driven.call(conn_a.session, "demote", handle=chat)
    # Views of the whole history: its promotion runs in steps.
    a.send_msg(m.request("messages", 1, handle=chat, views=True, packed=True))
    driven.server._read(conn_a)
    assert driven.server._jobs and not readable(a)
    b.send_msg(m.request("length", 2, handle=other))
    driven.server._read(conn_b)
    assert b.reply() == {"id": 2, "ok": MESSAGES}  # served while the promotion goes on
    turns = 0
    while driven.server._jobs:
        driven.server._run_job()
        turns += 1
    assert turns > 2
    body, fds = a.recv()
    try:
        assert body["id"] == 1 and fds  # the segments' fds ride with the deferred reply
        ok = body["ok"]
        assert isinstance(ok, dict) and ok["length"] == MESSAGES and ok["next"] is None
    finally:
        for fd in fds:
            os.close(fd)
    assert store.promotion_steps(chat) is None  # all hot again
    # The copying read gives the same bytes.
    a.send_msg(m.request("messages", 3, handle=chat))
    driven.server._read(conn_a)
    got = a.reply()
    assert got["id"] == 3
    assert got["ok"]["messages"] == expected  # type: ignore[index]
