from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys

import pytest

import agentmem
import agentmem.aio
from agentmem.client import Client, connect
from agentmem.config import Config
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import Service
from agentmem.errors import (
    AgentExists,
    InvalidArgument,
    StoreClosed,
    UnknownAgent,
    UnknownHandle,
    WrongType,
)
from agentmem.stats import AgentStats, StoreStats
from agentmem.testing import DaemonProcess
from tests.client.conftest import ClientFactory
from tests.conftest import message, text


def test_alloc_and_read_small_and_large(connect_agent: ClientFactory) -> None:
    c = connect_agent()
    small = b"hello agent"
    large = text(1, 3 << 20)  # > MEMFD_MIN: goes through a sealed memfd
    medium = text(2, 200_000)  # inline request, zero-copy read
    hs = [c.alloc_smu("tool_result", d) for d in (small, medium, large)]
    for h, d in zip(hs, (small, medium, large), strict=True):
        view = c.read(h)
        assert view.readonly
        assert bytes(view) == d


def test_identical_content_is_one_copy_across_agents(connect_agent: ClientFactory) -> None:
    prompt = text(3, 500_000)
    clients = [connect_agent() for _ in range(5)]
    handles = [c.alloc_smu("system_prompt", prompt) for c in clients]
    for c, h in zip(clients, handles, strict=True):
        assert bytes(c.read(h)) == prompt
    s = clients[0].get_stats()
    assert isinstance(s, StoreStats)
    assert s.unique_bytes == len(prompt)
    assert s.logical_bytes >= 5 * len(prompt)


def test_share_content_reaches_the_target_only(connect_agent: ClientFactory) -> None:
    a, b, c = connect_agent(), connect_agent(), connect_agent()
    h = a.alloc_smu("tool_def", b'{"tools": []}' * 100)
    hb = a.share_content(h, b.name)
    assert bytes(b.read(hb)) == b'{"tools": []}' * 100
    assert any(x["handle"] == hb for x in b.handles())
    with pytest.raises(UnknownHandle):
        c.read(hb)  # not shared with c
    with pytest.raises(UnknownHandle):
        a.read(hb)  # b's handle, not a's
    with pytest.raises(UnknownAgent):
        a.share_content(h, "nobody-here")


def test_conversations(connect_agent: ClientFactory) -> None:
    c = connect_agent()
    msgs = [message(i) for i in range(50)]
    conv = c.alloc_smu("conversation", msgs[:10])
    assert c.append(conv, msgs[10]) == 11
    assert c.extend(conv, msgs[11:50]) == 50
    assert c.messages(conv) == msgs
    assert c.messages(conv, -3) == msgs[-3:]
    fork = c.fork(conv)
    c.append(fork, b"diverge")
    assert c.length(conv) == 50 and c.length(fork) == 51
    with pytest.raises(WrongType):
        c.read(conv)


def test_demote_and_mark_hot_round_trip(connect_agent: ClientFactory) -> None:
    c = connect_agent()
    data = text(4, 400_000)
    h = c.alloc_smu("tool_result", data)
    assert c.demote(h) == len(data)
    s = c.get_stats()
    assert isinstance(s, StoreStats) and s.warm.chunks > 0
    assert bytes(c.read(h)) == data  # promoted back for a zero-copy read
    c.mark_hot(h)
    c.mark_hot(h, False)


def test_stats_per_agent(connect_agent: ClientFactory) -> None:
    a = connect_agent(importance=7)
    a.alloc_smu("system_prompt", b"p" * 1000)
    a.set_state("idle")
    s = a.get_stats(a.name)
    assert isinstance(s, AgentStats)
    assert (s.name, s.state, s.importance, s.logical_bytes) == (a.name, "idle", 7, 1000)


def test_closing_a_client_releases_its_refs(connect_agent: ClientFactory) -> None:
    a, b = connect_agent(), connect_agent()
    a.alloc_smu("blob", text(5, 100_000))
    a.close()
    s = b.get_stats()
    assert isinstance(s, StoreStats)
    assert a.name not in [x.name for x in s.per_agent]
    assert s.unique_bytes == 0
    # Closed by its owner: StoreClosed, not the DaemonUnavailable a reconnect loop retries.
    with pytest.raises(StoreClosed, match="the client is closed"):
        a.alloc_smu("blob", b"x")
    assert a.closed


def test_bad_input_gets_typed_errors(connect_agent: ClientFactory) -> None:
    c = connect_agent()
    with pytest.raises(InvalidArgument):
        c.alloc_smu("blob", 42)
    # Refused before anything is sent, with the class the daemon would answer (one tree to
    # catch: AgentmemError).
    with pytest.raises(InvalidArgument, match="unknown SMU type"):
        c.alloc_smu("nonsense", b"x")
    with pytest.raises(InvalidArgument, match="unknown agent state"):
        c.set_state("sleepy")
    with pytest.raises(UnknownHandle):
        c.read(123456)  # type: ignore[arg-type]
    # Past 64 bits: refused before sending (socket), or by the service (in-process).
    with pytest.raises(InvalidArgument, match="out of range"):
        c.read(2**70)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        c.alloc_smu("conversation", b"one buffer")
    with pytest.raises(AgentExists):
        connect_agent(name=c.name)
    h = c.alloc_smu("blob", b"still fine")
    assert bytes(c.read(h)) == b"still fine"


def test_published_content_opens_in_the_handshake(connect_agent: ClientFactory) -> None:
    orchestrator = connect_agent()
    prompt = text(6, 1 << 20)
    h = orchestrator.alloc_smu("system_prompt", prompt)
    orchestrator.publish(h, "coder/prompt")
    orchestrator.close()  # the published name outlives its publisher
    agent = connect_agent(open=["coder/prompt"])
    assert bytes(agent.read(agent.opened["coder/prompt"])) == prompt
    again = agent.open("coder/prompt")
    assert bytes(agent.read(again)) == prompt
    with pytest.raises(UnknownHandle):
        connect_agent(open=["no/such/name"])
    with pytest.raises(InvalidArgument, match=r"open=\['coder/prompt'\]"):
        connect_agent(open="coder/prompt")  # one str: not its characters one by one
    agent.unpublish("coder/prompt")
    with pytest.raises(UnknownHandle):
        agent.open("coder/prompt")


def _requests(client: Client) -> int:
    """Requests the daemon has served, this call's own included."""
    stats = client.get_stats(daemon=True)
    assert isinstance(stats, StoreStats) and stats.daemon is not None
    return stats.daemon.requests


def test_opened_content_comes_with_the_handshake(connect_agent: ClientFactory) -> None:
    orchestrator = connect_agent()
    prompt, tools = text(7, 1 << 20), text(8, 3000)
    for name, data, kind in (("p", prompt, "system_prompt"), ("t", tools, "tool_def")):
        orchestrator.publish(orchestrator.alloc_smu(kind, data), f"coder/{name}")
    agent = connect_agent(open=["coder/p", "coder/t"])
    p, t = agent.opened["coder/p"], agent.opened["coder/t"]
    before = _requests(agent)
    first = agent.views(p)  # mapped from the handshake's reply (a segment, not inline)
    assert b"".join(first) == prompt and all(v.readonly for v in first)
    assert bytes(agent.read(t)) == tools  # inline in the handshake's reply
    assert _requests(agent) == before + 1  # the first reads asked the daemon nothing
    assert bytes(agent.read(p)) == prompt  # later reads ask again
    assert _requests(agent) == before + 3
    agent.release(t)
    with pytest.raises(UnknownHandle):
        agent.read(t)  # a released handle has no content left in the client either
    del first


def test_the_handshake_brings_no_copies(connect_agent: ClientFactory) -> None:
    """Content the agent may not map (private chunks in segments that hold other content) is
    copied when read: up to 8 MiB inline each, more than one frame holds for a few names. The
    handshake leaves it to the first read instead of failing."""
    orchestrator = connect_agent()
    bodies, names = [], [f"private/{i}" for i in range(20)]
    for i, name in enumerate(names):
        head = text(40 + i, 800_000)  # kept by the orchestrator: its own segment
        orchestrator.alloc_smu("tool_result", head)
        bodies.append(head + text(140 + i, 100_000))  # 18 MB in all, in two segments each
        orchestrator.publish(orchestrator.alloc_smu("tool_result", bodies[-1]), name)
    agent = connect_agent(open=names)
    before = _requests(agent)
    for name, body in zip(names, bodies, strict=True):
        assert bytes(agent.read(agent.opened[name])) == body
    assert _requests(agent) == before + 21  # each was read from the daemon, as a copy


@pytest.mark.parametrize("transport", ["inprocess", "socket"])
def test_the_handshake_brings_what_one_frame_may_carry(transport: str) -> None:
    """Content over more segments than one reply may pass fds for: what fits comes with the
    handshake, the rest is read from the daemon on first use, all of it intact."""
    seg = 64 << 10
    # Each body is 50 pieces stored first on their own, so its chunks lie in ~50 segments.
    groups = [[text(100 * g + i, 50_000) for i in range(50)] for g in range(3)]
    bodies = [b"".join(pieces) for pieces in groups]
    names = [f"big/{i}" for i in range(3)]
    with contextlib.ExitStack() as stack:
        if transport == "inprocess":
            service = Service(Config(segment_bytes=seg))
            stack.callback(service.close_all)

            def connect_one(**kw: object) -> Client:
                return Client(InProcessTransport(service), name=f"big-{len(kw)}", **kw)  # type: ignore[arg-type]
        else:
            env = {**os.environ, "AGENTMEM_SEGMENT_BYTES": str(seg)}
            daemon = stack.enter_context(DaemonProcess(env=env))

            def connect_one(**kw: object) -> Client:
                return connect(daemon.socket, name=f"big-{len(kw)}", **kw)  # type: ignore[arg-type]

        orchestrator = stack.enter_context(connect_one())
        for name, pieces, body in zip(names, groups, bodies, strict=True):
            for piece in pieces:
                orchestrator.alloc_smu("tool_def", piece)
            orchestrator.publish(orchestrator.alloc_smu("tool_def", body), name)
        agent = stack.enter_context(connect_one(open=names))
        before = _requests(agent)
        for name, body in zip(names, bodies, strict=True):
            assert bytes(agent.read(agent.opened[name])) == body
        asked = _requests(agent) - before - 1  # reads that were not in the handshake
        assert asked == 2  # the first came with it (~50 fds), the others did not fit


NAMES = """
import sys, agentmem
first = agentmem.connect(sys.argv[1])
second = agentmem.connect(sys.argv[1])
print(first.name, second.name)
"""


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_an_agent_without_a_program_name_is_named_after_python(how: str) -> None:
    with DaemonProcess() as daemon:
        argv = [sys.executable, "-c", NAMES] if how == "-c" else [sys.executable, "-"]
        out = subprocess.run(
            [*argv, daemon.socket],
            input=None if how == "-c" else NAMES,
            capture_output=True,
            text=True,
            check=True,
        )
    first, second = out.stdout.split()
    assert first.startswith("python-") and second == f"{first}-2", out.stdout


def test_inprocess_takes_no_socket(daemon: DaemonProcess) -> None:
    for kwargs in ({"socket_path": daemon.socket}, {"autostart": True}):
        with pytest.raises(InvalidArgument, match="inprocess=True uses no daemon"):
            agentmem.connect(inprocess=True, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="inprocess=True uses no daemon"):
            asyncio.run(agentmem.aio.connect(inprocess=True, **kwargs))  # type: ignore[arg-type]
