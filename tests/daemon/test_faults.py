"""Bad input, exhausted quotas and clients killed mid-request, against a real daemon.

The daemon's promise (DESIGN.md, "Security model" and "Reliability"): bad input gets a typed
error reply, a protocol violation closes that one connection, nothing a client sends stops the
daemon or leaks a descriptor, and a client that dies releases every ref it held. Each test
below sends the bad input for real, over a raw socket, and then checks that promise: the reply
or the closed connection, the daemon alive, its descriptors back to where they were, and a
well-behaved client (the *witness*) still reading back exactly what it stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import resource
import signal
import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentmem
from agentmem.client import Client
from agentmem.daemon.service import HANDLERS
from agentmem.errors import (
    ERRORS_BY_CODE,
    AgentmemError,
    InvalidArgument,
    ProtocolError,
    QuotaExceeded,
)
from agentmem.protocol import framing
from agentmem.protocol import messages as m
from agentmem.protocol.fdpass import MAX_FDS_PER_FRAME
from agentmem.states import AgentState, SMUType
from agentmem.stats import StoreStats
from agentmem.store.segments import SHARE_SEALS
from agentmem.testing import DaemonProcess
from tests.conftest import message, text
from tests.daemon.conftest import (
    Child,
    RawPeer,
    closed_by_peer,
    daemon_fds,
    open_fds,
    wait_until,
)

# --- the witness and the invariants checked after bad input ---------------------------------


class Witness:
    """A well-behaved agent whose content must read back exactly, whatever others send."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.client = agentmem.connect(daemon.socket, name="witness")
        self.content = {
            self.client.alloc_smu("system_prompt", data): data
            for data in (text(1, 300), text(2, 120_000), os.urandom(40_000))
        }
        self.chat = self.client.alloc_smu("conversation", [message(i) for i in range(20)])

    def check(self) -> None:
        assert self.daemon.alive(), self.daemon.log()[-2000:]
        for h, data in self.content.items():
            assert bytes(self.client.read(h)) == data
        assert self.client.messages(self.chat) == [message(i) for i in range(20)]


@pytest.fixture(scope="module")
def witness(daemon: DaemonProcess) -> Iterator[Witness]:
    w = Witness(daemon)
    yield w
    w.client.close()


@pytest.fixture
def unharmed(daemon: DaemonProcess, witness: Witness) -> Iterator[None]:
    """After the test: the daemon lives, leaked nothing and served nothing wrong."""
    witness.check()
    before = daemon_fds(daemon.pid)
    yield
    witness.check()
    wait_until(lambda: daemon_fds(daemon.pid) == before, f"the daemon's fds are back to {before}")
    log = daemon.log()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]


def assert_reply(reply: dict[str, object], ident: object = None) -> None:
    """A well-formed reply: one of ok/err, and no error the daemon reports as its own bug."""
    assert ("ok" in reply) != ("err" in reply), reply
    if ident is not None:
        assert reply["id"] == ident
    if "err" in reply:
        assert reply["err"] in ERRORS_BY_CODE, reply
        assert reply["err"] != AgentmemError.code, f"internal error in the daemon: {reply}"


def ends_closed(peer: RawPeer, *, shut: bool) -> list[dict[str, object]]:
    """Replies until the daemon closes the connection; ``shut``: end our side first (for input
    the daemon must wait on, such as half a frame)."""
    if shut:
        peer.sock.shutdown(socket.SHUT_WR)
    replies = peer.until_closed()
    for r in replies:
        assert_reply(r)
    return replies


# --- garbage, truncated and oversized frames -------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=24),
    st.binary(max_size=48),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_HEADER_BYTES = st.builds(
    framing.HEADER.pack,
    st.sampled_from([framing.MAGIC, b"AQ", b"\0\0"]),
    st.sampled_from([framing.FRAME_VERSION, 0, 2, 255]),
    st.sampled_from([0, framing.FLAG_FDS, 0x02, 0x80]),
    st.integers(0, 2**32 - 1),
)


def _frame_with_body(body: bytes, flags: int = 0) -> bytes:
    return framing.HEADER.pack(framing.MAGIC, framing.FRAME_VERSION, flags, len(body)) + body


_GARBAGE = st.one_of(
    st.binary(max_size=200),  # anything
    st.builds(bytes.__add__, _HEADER_BYTES, st.binary(max_size=64)),  # header-shaped
    st.binary(max_size=200).map(_frame_with_body),  # a valid header, garbage body
    st.builds(  # a valid frame cut short
        lambda msg, cut: framing.encode(msg)[: max(1, len(framing.encode(msg)) - cut)],
        st.dictionaries(st.text(max_size=8), _VALUES, max_size=4),
        st.integers(1, 40),
    ),
    st.builds(  # msgpack that is not a map of str keys
        lambda v: _frame_with_body(msgpack.packb(v)),
        st.one_of(_SCALARS, st.lists(_SCALARS, max_size=4)),
    ),
)


def _served_hello(data: bytes) -> bool:
    """Whether ``data`` starts with a complete hello frame: the daemon may then keep the
    connection open, waiting for more."""
    try:
        frames = framing.FrameDecoder().feed(data)
    except AgentmemError:
        return False
    return bool(frames) and frames[0].body.get("op") == m.OP_HELLO


def _daemon_must_close(data: bytes) -> bool:
    """Whether the daemon must close a fresh connection that sent only ``data``: a bad frame,
    or a complete first frame that is not a hello."""
    try:
        frames = framing.FrameDecoder().feed(data)
    except AgentmemError:
        return True
    return bool(frames) and frames[0].body.get("op") != m.OP_HELLO


@pytest.mark.slow
@pytest.mark.usefixtures("unharmed")
def test_garbage_from_fresh_connections(daemon: DaemonProcess, witness: Witness) -> None:
    cases = itertools.count()

    @settings(
        max_examples=3000,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=_GARBAGE)
    def attack(data: bytes) -> None:
        with RawPeer(daemon.socket) as peer:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                peer.send(data)  # may fail part-way: the header alone can close the connection
            if _served_hello(data):
                ends_closed(peer, shut=True)
            else:
                # Closed by the daemon, never answered with success.
                replies = ends_closed(peer, shut=not _daemon_must_close(data))
                assert all("err" in r for r in replies), replies
        if next(cases) % 250 == 0:
            witness.check()

    attack()


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize(
    ("length", "sent"),
    [
        (framing.MAX_FRAME_BYTES + 1, 0),
        (2**32 - 1, 100),
        (framing.MAX_FRAME_BYTES, 1 << 20),  # within bounds, then the peer stops
        (framing.MAX_FRAME_BYTES, framing.MAX_FRAME_BYTES),  # all of it, garbage
    ],
    ids=["over-the-limit", "4-GiB", "truncated-16-MiB", "garbage-16-MiB"],
)
def test_huge_declared_lengths(daemon: DaemonProcess, length: int, sent: int) -> None:
    header = framing.HEADER.pack(framing.MAGIC, framing.FRAME_VERSION, 0, length)
    for hello_first in (False, True):
        with RawPeer(daemon.socket) as peer:
            if hello_first:
                peer.hello("big")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                peer.send(header + b"\xc1" * sent)  # 0xc1: never valid msgpack
            over = length > framing.MAX_FRAME_BYTES or sent == length
            assert ends_closed(peer, shut=not over) == []


# --- valid frames, wrong fields ---------------------------------------------------------------

#: Every field any operation reads, with values of the right type mixed in so that requests get
#: past their first check often enough to reach the later ones.
_FIELDS = (
    "handle",
    "type",
    "data",
    "messages",
    "message",
    "size",
    "target",
    "hot",
    "agent",
    "state",
    "importance",
    "start",
    "stop",
    "name",
    "version",
)


class _Own:
    """Stands for the fuzzing connection's own handle number ``i`` (they are random, so the
    strategy cannot name them); replaced just before the request is sent."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i

    def __repr__(self) -> str:
        return f"<own handle {self.i}>"


_PLAUSIBLE = st.one_of(
    st.builds(_Own, st.integers(0, 3)),
    st.integers(-2, 12),
    st.sampled_from([t.name.lower() for t in SMUType] + [s.name.lower() for s in AgentState]),
    st.sampled_from(["witness", "fuzz-0", "", "x" * 300]),
    st.binary(max_size=32),
    st.lists(st.one_of(st.binary(max_size=16), st.text(max_size=16)), max_size=3),
    st.integers(2**31, 2**64 - 1),
    st.integers(-(2**63), -(2**31)),
)
_REQUESTS = st.tuples(
    st.sampled_from([*sorted(HANDLERS), m.OP_HELLO, "unknown-op", "", "x" * 100]),
    st.dictionaries(st.sampled_from(_FIELDS), st.one_of(_PLAUSIBLE, _VALUES), max_size=5),
)


@pytest.mark.slow
@pytest.mark.usefixtures("unharmed")
def test_mistyped_fields_for_every_operation(daemon: DaemonProcess, witness: Witness) -> None:
    """Thousands of well-framed requests with wrong, missing, extreme or extra fields, on
    long-lived connections: each gets a typed error (or succeeds), the connection stays."""
    names = (f"fuzz-{i}" for i in itertools.count())
    state: dict[str, Any] = {"peer": None, "cases": 0}

    def peer() -> RawPeer:
        if state["peer"] is None:
            fresh = RawPeer(daemon.socket)
            fresh.hello(next(names))
            released = fresh.call("alloc_smu", type="blob", data=b"gone")
            fresh.call("release", handle=released)
            state["own"] = [
                fresh.call("alloc_smu", type="blob", data=os.urandom(40_000)),
                fresh.call("alloc_smu", type="conversation", messages=[b"a", b"b"]),
                fresh.call("alloc_smu", type="tool_result", data=b"small"),
                released,
            ]
            state["peer"] = fresh
        p: RawPeer = state["peer"]
        return p

    @settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=_REQUESTS, ident=st.integers(-(2**63), 2**64 - 1))
    def attack(request: tuple[str, dict[str, object]], ident: int) -> None:
        op, fields = request
        p = peer()
        own = state["own"]
        body = {k: own[v.i] if isinstance(v, _Own) else v for k, v in fields.items()}
        p.send_msg({**body, "id": ident, "op": op})
        reply = p.reply()
        if reply.get("err") == ProtocolError.code:
            state["peer"] = None  # closed: the next case starts afresh, this one fails
            p.close()
            pytest.fail(f"a well-framed request closed the connection: {reply}")
        assert_reply(reply, ident)
        state["cases"] += 1
        if state["cases"] % 500 == 0:
            witness.check()

    try:
        attack()
    finally:
        if state["peer"] is not None:
            state["peer"].close()


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize(
    "ident", [None, "1", 1.5, True, [1], {"id": 1}, b"\x01"], ids=lambda v: type(v).__name__
)
def test_request_without_an_integer_id_closes_the_connection(
    daemon: DaemonProcess, ident: object
) -> None:
    for hello_first in (False, True):
        with RawPeer(daemon.socket) as peer:
            if hello_first:
                peer.hello("no-id")
            body = {"op": "get_stats"} if ident is None else {"id": ident, "op": "get_stats"}
            peer.send(framing.encode(body))
            assert ends_closed(peer, shut=False) == []  # nothing to address a reply to


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize("op", [*sorted(HANDLERS), "unknown-op"])
def test_requests_before_hello_are_refused_and_closed(daemon: DaemonProcess, op: str) -> None:
    with RawPeer(daemon.socket) as peer:
        peer.send_msg(m.request(op, 7, handle=1))
        (reply,) = ends_closed(peer, shut=False)
        assert reply["id"] == 7 and reply["err"] == ProtocolError.code


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize(
    ("version", "closes"),
    [(0, True), (2, True), (-1, True), (2**64 - 1, True), ("1", False), (None, False)],
)
def test_hello_with_a_bad_version(daemon: DaemonProcess, version: object, closes: bool) -> None:
    with RawPeer(daemon.socket) as peer:
        reply = peer.request(m.OP_HELLO, version=version, name="old")
        if closes:  # another schema: say so, then close
            assert reply["err"] == ProtocolError.code
            assert ends_closed(peer, shut=False) == []
        else:  # a mistyped field: an error, and the peer may try again
            assert reply["err"] == InvalidArgument.code
            info = m.raise_for_reply(peer.hello("fixed"))
            assert isinstance(info, dict) and info["agent"] == "fixed"


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize(
    "fields",
    [
        {"type": ["tool_result"], "data": b"x"},  # unhashable: no table lookup may take it
        {"type": {"a": 1}, "data": b"x"},
        {"type": True, "data": b"x"},
        {"type": "TOOL_RESULT", "data": 1},
        {"type": "tool_result", "data": b"x", "stack": 5},
    ],
)
def test_mistyped_alloc_fields_are_invalid_arguments(
    daemon: DaemonProcess, fields: dict[str, object]
) -> None:
    with RawPeer(daemon.socket) as peer:
        peer.hello("mistyped")
        reply = peer.request("alloc_smu", **fields)
        assert reply["err"] == InvalidArgument.code
        assert peer.call("alloc_smu", type="tool_result", data=b"ok") > 0  # still served


# --- file descriptors where none belong ----------------------------------------------------------


class Pipes:
    """Write ends of pipes to attach to requests; tells when the daemon closed its copies."""

    def __init__(self, n: int) -> None:
        self.pairs = [os.pipe() for _ in range(n)]

    @property
    def write_ends(self) -> list[int]:
        return [w for _, w in self.pairs]

    def sent(self) -> None:
        """Our copies of the write ends are no longer needed once they are in flight."""
        for _, w in self.pairs:
            os.close(w)

    def all_closed_by_daemon(self) -> bool:
        return all(closed_by_peer(r) for r, _ in self.pairs)

    def close(self) -> None:
        for r, _ in self.pairs:
            os.close(r)


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize("op", [m.OP_HELLO, *sorted(HANDLERS)])
def test_fds_attached_to_requests_that_take_none(daemon: DaemonProcess, op: str) -> None:
    with RawPeer(daemon.socket) as peer:
        if op != m.OP_HELLO:
            peer.hello("fd-sender")
        h = peer.call("alloc_smu", type="conversation", messages=[]) if op != m.OP_HELLO else 0
        pipes = Pipes(3)
        args: dict[str, object] = {"handle": h, "type": "tool_result", "size": 1, "name": "x"}
        if op == m.OP_HELLO:
            args["version"] = m.PROTOCOL_VERSION
        peer.send_msg(m.request(op, 5, **args), pipes.write_ends)
        pipes.sent()
        reply = peer.reply()
        assert reply["err"] == InvalidArgument.code, reply  # and the connection stays up
        assert pipes.all_closed_by_daemon()
        pipes.close()
        if op == m.OP_HELLO:
            peer.hello("fd-sender")
        assert isinstance(peer.call("handles"), list)


def _memfd(data: bytes, seals: int) -> int:
    fd = os.memfd_create("attack", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


_SEALED = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize(
    ("what", "size"),
    [
        ("unsealed memfd", 100),
        ("memfd sealed only against future writes", 100),
        ("memfd sealed but not against growth", 100),
        ("size larger than the memfd", 101),
        ("size smaller than the memfd", 99),
        ("negative size", -1),
        ("two memfds", 100),
        ("a pipe", 100),
        ("a socket", 100),
        ("a directory", 100),
    ],
)
def test_alloc_with_a_bad_memfd(daemon: DaemonProcess, what: str, size: int) -> None:
    data = os.urandom(100)
    if what == "unsealed memfd":
        fds = [_memfd(data, 0)]
    elif what == "memfd sealed only against future writes":
        fds = [_memfd(data, SHARE_SEALS)]  # the sender keeps a writable way in: refused
    elif what == "memfd sealed but not against growth":
        fds = [_memfd(data, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK)]
    elif what == "two memfds":
        fds = [_memfd(data, _SEALED), _memfd(data, _SEALED)]
    elif what == "a pipe":
        r, w = os.pipe()
        os.close(w)
        fds = [r]
    elif what == "a socket":
        a, b = socket.socketpair()
        fds = [a.detach()]
        b.close()
    elif what == "a directory":
        fds = [os.open("/", os.O_RDONLY | os.O_DIRECTORY)]
    else:
        fds = [_memfd(data, _SEALED)]
    with RawPeer(daemon.socket) as peer:
        peer.hello("memfd-sender")
        peer.send_msg(m.request("alloc_smu", 1, type="blob", size=size), fds)
        for fd in fds:
            os.close(fd)
        reply = peer.reply()
        assert reply["err"] == InvalidArgument.code, reply
        assert peer.call("handles") == []


@pytest.mark.usefixtures("unharmed")
@pytest.mark.parametrize(
    "case",
    [
        "flag without fds",
        "fds without flag",
        "too many fds",
        "the kernel's maximum of fds",
        "fds behind a frame that closes the connection",
        "fds on a frame without an id",
        "fds on a frame without an op",
    ],
)
def test_fds_that_do_not_match_the_frame(daemon: DaemonProcess, case: str) -> None:
    """Every fd the daemon receives is closed, whatever the frame around it says."""
    n = {"too many fds": MAX_FDS_PER_FRAME + 1, "the kernel's maximum of fds": 253}.get(case, 2)
    pipes = Pipes(n)
    with RawPeer(daemon.socket) as peer:
        peer.hello("mismatch")
        good = framing.encode(m.request("handles", 1))
        if case == "flag without fds":
            data, fds = framing.encode(m.request("handles", 1), fds=True), []
        elif case == "fds without flag":
            data, fds = good, pipes.write_ends
        elif case in ("too many fds", "the kernel's maximum of fds"):
            data, fds = framing.encode(m.request("handles", 1), fds=True), pipes.write_ends
        elif case == "fds behind a frame that closes the connection":
            # One send: a frame with no id (the daemon closes), then a frame claiming the fds.
            data = framing.encode({"op": "handles"}) + framing.encode(
                m.request("handles", 2), fds=True
            )
            fds = pipes.write_ends
        elif case == "fds on a frame without an id":
            data, fds = framing.encode({"op": "read", "handle": 1}, fds=True), pipes.write_ends
        else:
            data, fds = framing.encode({"id": 3, "handle": 1}, fds=True), pipes.write_ends
        peer.send(data, fds)
        pipes.sent()
        if case == "fds without flag":  # served; the unasked fds are dropped
            assert peer.reply() == {"id": 1, "ok": []}
        elif case == "fds on a frame without an op":  # a bad argument: answered, not closed
            assert peer.reply()["err"] == InvalidArgument.code
            assert peer.call("handles") == []
        else:
            ends_closed(peer, shut=False)
    assert pipes.all_closed_by_daemon()
    pipes.close()


# --- quotas -------------------------------------------------------------------------------------

AGENT_QUOTA = 1 << 20
DOMAIN_QUOTA = (5 << 20) // 2
HANDLE_QUOTA = 50


@pytest.fixture(scope="module")
def quota_daemon() -> Iterator[DaemonProcess]:
    env = dict(
        os.environ,
        AGENTMEM_AGENT_QUOTA_BYTES=str(AGENT_QUOTA),
        AGENTMEM_DOMAIN_QUOTA_BYTES=str(DOMAIN_QUOTA),
        AGENTMEM_AGENT_QUOTA_HANDLES=str(HANDLE_QUOTA),
    )
    with DaemonProcess(env=env) as d:
        yield d


def _stats(c: Client) -> StoreStats:
    s = c.get_stats()
    assert isinstance(s, StoreStats)
    return s


def test_agent_quota_is_a_typed_error(quota_daemon: DaemonProcess) -> None:
    piece = 256 << 10
    with agentmem.connect(quota_daemon.socket, name="greedy") as c:
        held = [c.alloc_smu("blob", os.urandom(piece)) for _ in range(AGENT_QUOTA // piece)]
        with pytest.raises(QuotaExceeded, match="greedy"):
            c.alloc_smu("blob", os.urandom(piece))
        with pytest.raises(QuotaExceeded):  # deduplicated or not, what it holds counts
            c.alloc_smu("blob", bytes(c.read(held[0])))
        with pytest.raises(QuotaExceeded):  # through a memfd too
            c.alloc_smu("blob", os.urandom(2 << 20))
        conv = c.alloc_smu("conversation", [])
        with pytest.raises(QuotaExceeded):
            c.append(conv, os.urandom(1000))
        assert _stats(c).logical_bytes == AGENT_QUOTA
        c.release(held.pop())  # room again: the same connection goes on
        held.append(c.alloc_smu("blob", os.urandom(piece)))
    with agentmem.connect(quota_daemon.socket, name="after") as c:
        assert _stats(c).unique_bytes == 0  # the closed agent's content went with it


def test_handle_quota_is_a_typed_error(quota_daemon: DaemonProcess) -> None:
    with agentmem.connect(quota_daemon.socket, name="hoarder") as c:
        for i in range(HANDLE_QUOTA):
            c.alloc_smu("blob", b"%d" % i)
        with pytest.raises(QuotaExceeded, match="handles"):
            c.alloc_smu("blob", b"one more")
        assert _stats(c).handles == HANDLE_QUOTA


def test_domain_quota_is_a_typed_error(quota_daemon: DaemonProcess) -> None:
    piece = 256 << 10
    clients = [agentmem.connect(quota_daemon.socket, name=f"tenant-{i}") for i in range(4)]
    try:
        stored = 0
        refusals: list[str] = []
        first = None
        for c in clients:
            for _ in range(AGENT_QUOTA // piece):
                try:
                    h = c.alloc_smu("blob", os.urandom(piece))
                    first = first or (c, h)
                    stored += piece
                except QuotaExceeded as exc:
                    refusals.append(str(exc))
        assert stored == DOMAIN_QUOTA - DOMAIN_QUOTA % piece
        assert len(refusals) == 4 * AGENT_QUOTA // piece - stored // piece
        assert all("domain" in r for r in refusals), refusals
        s = _stats(clients[0])
        assert s.unique_bytes == stored <= DOMAIN_QUOTA
        assert s.physical_bytes < DOMAIN_QUOTA + (8 << 20)  # content plus two segments' slack
        # Content already stored costs the domain nothing: a full domain still takes it.
        assert first is not None
        again = bytes(first[0].read(first[1]))
        h = clients[-1].alloc_smu("blob", again)
        assert bytes(clients[-1].read(h)) == again
        assert _stats(clients[0]).unique_bytes == stored
    finally:
        for c in clients:
            c.close()
    assert quota_daemon.alive()


# --- clients killed mid-request ------------------------------------------------------------------


def _live_agents(c: Client) -> list[str]:
    return [a.name for a in _stats(c).per_agent]


def _victim(socket_path: str, shared: bytes, how: str) -> Any:
    """What the child runs: allocate shared and private content, then die while ``how``."""

    def run(channel: Any) -> object:
        peer = RawPeer(socket_path)
        peer.hello("doomed")
        peer.call("alloc_smu", type="system_prompt", data=shared)
        for i in range(8):
            peer.call("alloc_smu", type="tool_result", data=os.urandom(100_000 + i))
        peer.call("alloc_smu", type="conversation", messages=[message(i) for i in range(50)])
        peer.call("alloc_smu", type="blob", data=os.urandom(3 << 20))  # a segment of its own
        if how == "in a tight alloc loop":
            channel.send("ready")
            for i in itertools.count():
                peer.call("alloc_smu", type="blob", data=b"%d" % i + os.urandom(2000))
        elif how == "half-way through a large frame":
            frame = framing.encode(m.request("alloc_smu", 99, type="blob", data=b"z" * (8 << 20)))
            peer.send(frame[: len(frame) // 2])
            channel.send("ready")
        else:  # "waiting for the reply to a memfd allocation"
            fd = _memfd(os.urandom(32 << 20), _SEALED | fcntl.F_SEAL_SEAL)
            peer.send_msg(m.request("alloc_smu", 99, type="blob", size=32 << 20), [fd])
            channel.send("ready")
        channel.wait()  # killed here
        return None

    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    [
        "in a tight alloc loop",
        "half-way through a large frame",
        "waiting for the reply to a memfd allocation",
    ],
)
def test_client_killed_mid_request_leaves_no_refs(daemon: DaemonProcess, how: str) -> None:
    shared = text(77, 200_000)
    with agentmem.connect(daemon.socket, name="survivor") as survivor:
        keep = [survivor.alloc_smu("system_prompt", shared), survivor.alloc_smu("blob", b"mine")]
        baseline = _stats(survivor)
        fds_before = daemon_fds(daemon.pid)
        child = Child(_victim(daemon.socket, shared, how))
        assert child.recv(timeout=60) == "ready"
        assert "doomed" in _live_agents(survivor)
        during = _stats(survivor)
        assert during.handles > baseline.handles
        assert during.unique_bytes > baseline.unique_bytes + (3 << 20)
        child.kill(signal.SIGKILL)
        wait_until(lambda: "doomed" not in _live_agents(survivor), "the killed agent is gone")
        after = _stats(survivor)
        assert _live_agents(survivor) == [a.name for a in baseline.per_agent]
        for field in ("agents", "handles", "logical_bytes", "unique_bytes", "chunks", "messages"):
            assert getattr(after, field) == getattr(baseline, field), field
        assert after.segments <= baseline.segments + 1  # at most a fresh open segment
        assert daemon_fds(daemon.pid) == fds_before  # its socket and passed memfd closed
        assert [bytes(survivor.read(h)) for h in keep] == [shared, b"mine"]


# --- a client that stops reading -----------------------------------------------------------------


def _proc_field(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    raise KeyError(field)


def _sleeping(pid: int) -> bool:
    """Whether the (single-threaded) daemon is blocked in the kernel, i.e. not spinning."""
    return _proc_field(pid, "State").startswith("S")


@pytest.mark.slow
def test_a_client_that_never_reads_its_replies_does_not_make_the_daemon_spin() -> None:
    """Past its output limit the daemon stops reading that client; it must then sleep until
    the client drains, not wake for the unread requests over and over, and lose nothing."""
    big = [os.urandom(1 << 20) for _ in range(4)]
    n_big, n_small = 24, 40_000  # 96 MiB of replies (over the 64 MiB limit), then small ones

    def stall(channel: Any) -> object:
        import threading

        peer = RawPeer(d.socket, timeout=60)
        peer.hello("stalled")
        conv = peer.call("alloc_smu", type="conversation", messages=big)
        requests = b"".join(
            framing.encode(m.request("messages", i, handle=conv)) for i in range(n_big)
        ) + b"".join(
            framing.encode(m.request("length", i, handle=conv))
            for i in range(n_big, n_big + n_small)
        )
        sender = threading.Thread(target=peer.sock.sendall, args=(requests,))
        sender.start()  # blocks once the daemon stops reading
        channel.send("sending")
        channel.wait()
        for i in range(n_big):
            assert peer.call_reply(i) == {"messages": big, "next": None, "length": 4}
        for i in range(n_big, n_big + n_small):
            assert peer.call_reply(i) == 4
        sender.join()
        return n_big + n_small

    with DaemonProcess() as d, agentmem.connect(d.socket, name="witness") as witness:
        data = os.urandom(50_000)
        h = witness.alloc_smu("blob", data)
        child = Child(stall)
        assert child.recv(timeout=60) == "sending"
        wait_until(
            lambda: int(_proc_field(d.pid, "RssAnon").split()[0]) << 10 > 64 << 20,
            "the daemon holds more replies than its limit",
            timeout=60,
        )
        wait_until(lambda: _sleeping(d.pid), "the daemon sleeps while the client does not read")
        assert bytes(witness.read(h)) == data  # others are served meanwhile
        child.release()
        assert child.recv(timeout=60) == n_big + n_small  # every request answered, in order
        assert child.join() == 0
        assert bytes(witness.read(h)) == data


# --- out of file descriptors ---------------------------------------------------------------------


def _exhaust_fds(d: DaemonProcess, spare: int) -> list[socket.socket]:
    """Cap the daemon's fd limit ``spare`` above what it has open, then connect until it cannot
    accept any more. Returns our ends of the connections (the caller closes them)."""
    limit = open_fds(d.pid) + spare
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (limit, limit))
    flood = []
    for _ in range(spare + 8):  # the kernel queues what the daemon cannot accept
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.connect(d.socket)
        flood.append(s)
    wait_until(lambda: "out of file descriptors" in d.log(), "the daemon runs out of fds")
    return flood


@pytest.mark.slow
def test_running_out_of_fds_neither_spins_nor_stops_serving() -> None:
    with DaemonProcess() as d, RawPeer(d.socket) as witness:
        witness.hello("witness")
        h = witness.call("alloc_smu", type="blob", data=b"kept")
        flood = _exhaust_fds(d, spare=4)
        try:
            wait_until(lambda: _sleeping(d.pid), "the daemon sleeps while it cannot accept")
            assert witness.call("read", handle=h) == {"data": b"kept"}  # still served
        finally:
            for s in flood:
                s.close()
        with RawPeer(d.socket) as late:  # fds free again: accepted and served
            assert m.raise_for_reply(late.hello("late"))
        assert d.alive()
        assert d.log().count("out of file descriptors") < 50  # not one per loop turn


@pytest.mark.slow
def test_a_reply_that_cannot_be_queued_closes_only_its_connection() -> None:
    """A reply carrying a segment fd to a client that is not reading must keep a copy of the
    fd until the socket takes it; out of fds, the daemon closes that one connection."""
    with DaemonProcess() as d, RawPeer(d.socket) as slow, RawPeer(d.socket) as other:
        slow.hello("slow")
        other.hello("other")
        hot = slow.call("alloc_smu", type="blob", data=os.urandom(40_000))
        inline = slow.call("alloc_smu", type="blob", data=os.urandom(16_000))
        mine = other.call("alloc_smu", type="blob", data=b"other's")
        flood = _exhaust_fds(d, spare=2)
        try:
            # 1.6 MB of replies fill the socket; the segment's reply must then be queued.
            slow.send(
                b"".join(framing.encode(m.request("read", i, handle=inline)) for i in range(100))
                + framing.encode(m.request("read", 100, handle=hot))
            )
            wait_until(
                lambda: "cannot queue a reply" in d.log() or not d.alive(),
                "the daemon meets the reply it cannot queue",
            )
            assert d.alive(), d.log()[-2000:]
            replies = slow.until_closed()
            assert [r["id"] for r in replies] == list(range(len(replies)))
            assert len(replies) < 101
            assert other.call("read", handle=mine) == {"data": b"other's"}
            wait_until(lambda: other.call("get_stats")["agents"] == 1, "slow's agent is gone")
        finally:
            for s in flood:
                s.close()
        assert d.alive()
