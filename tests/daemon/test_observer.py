"""The once-a-second observer, in-process: snapshot, cost budget of the detailed walk, file."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from agentmem.client import Client
from agentmem.daemon import observe
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.server import Server
from agentmem.daemon.service import Service
from agentmem.stats import StoreStats


def test_the_split_is_carried_between_costly_walks_and_new_agents_show_none(
    tmp_path: pathlib.Path,
) -> None:
    service = Service()
    path = tmp_path / "agent_stats"
    observer = observe.Observer(service, stats_path=str(path))
    old = Client(InProcessTransport(service), name="old-agent")
    old.alloc_smu("tool_result", os.urandom(3000))
    observer.tick()
    (uid,) = service.domains
    first = observer.snapshot
    assert first is not None and first.detail_age[uid] == 0.0
    assert first.domains[uid].per_agent[0].unique_bytes == 3000
    # Pretend the walk took 100 s, and the per-agent refreshes used up their budget: no split
    # is taken again for now.
    detail = observer._detail[uid]
    detail.cost, detail.credit = 100.0, -1.0
    new = Client(InProcessTransport(service), name="new-agent")
    new.alloc_smu("blob", os.urandom(500))
    observer.tick()
    snap = observer.snapshot
    assert snap is not None and snap is not first
    st = snap.domains[uid]
    by_name = {a.name: a for a in st.per_agent}
    assert by_name["old-agent"].unique_bytes == 3000  # carried from the last walk
    assert by_name["new-agent"].unique_bytes is None  # not walked yet
    assert by_name["new-agent"].logical_bytes == 500  # totals are always current
    assert st.logical_bytes == 3500 and st.daemon is not None
    text = path.read_text()
    assert "new-agent" in text and f"## uid {uid}" in text
    assert not list(tmp_path.glob("*.tmp"))
    observer.remove_file()
    assert not path.exists()
    old.close()
    new.close()
    service.close_all()


def test_a_costly_domain_is_refreshed_one_agent_at_a_time() -> None:
    """Past WALK_MAX the tick never walks the whole domain: it refreshes the agents whose split
    is oldest (never-refreshed first), each from its own records, while the budget allows."""
    service = Service()
    observer = observe.Observer(service)
    clients = [Client(InProcessTransport(service), name=f"agent-{i}") for i in range(3)]
    for c in clients:
        c.alloc_smu("tool_result", os.urandom(1000))
    observer.tick()
    (uid,) = service.domains
    detail = observer._detail[uid]
    walked_at = detail.at
    detail.cost = observe.WALK_MAX * 2  # too costly to walk whole from now on
    detail.credit_at = time.monotonic() + 3600  # no credit accrues: the test grants it
    for c in clients:
        c.alloc_smu("tool_result", os.urandom(1000))  # each agent's split is stale now
    late = Client(InProcessTransport(service), name="agent-late")
    late.alloc_smu("blob", os.urandom(700))

    def uniques() -> dict[str, int | None]:
        snap = observer.snapshot
        assert snap is not None
        return {a.name: a.unique_bytes for a in snap.domains[uid].per_agent}

    detail.credit = 1e-9  # enough for one refresh, which overdraws it
    observer.tick()
    assert uniques() == {"agent-0": 1000, "agent-1": 1000, "agent-2": 1000, "agent-late": 700}
    detail.credit = 1e-9
    observer.tick()  # the oldest of the three next (by name among equals)
    assert uniques() == {"agent-0": 2000, "agent-1": 1000, "agent-2": 1000, "agent-late": 700}
    detail.credit = 1.0
    observer.tick()  # credit for all: the rest
    assert uniques() == {"agent-0": 2000, "agent-1": 2000, "agent-2": 2000, "agent-late": 700}
    assert detail.at == walked_at  # no walk of the whole domain since
    exact = clients[0].get_stats()  # the walk, for comparison
    assert isinstance(exact, StoreStats)
    assert uniques() == {a.name: a.unique_bytes for a in exact.per_agent}
    clients[1].close()  # a gone agent's split is dropped
    detail.credit = 1.0
    observer.tick()
    assert "agent-1" not in detail.agents and "agent-1" not in detail.refreshed
    for c in (clients[0], clients[2], late):
        c.close()
    service.close_all()


def test_a_walk_that_runs_past_the_budget_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A domain that grew since its last walk (or was restored large) is walked for at most
    WALK_MAX: past it the tick stops where it was and refreshes agents one at a time after."""
    service = Service()
    observer = observe.Observer(service)
    client = Client(InProcessTransport(service), name="big")
    chat = client.conversation()
    chat.extend({"role": "user", "content": f"message {i}"} for i in range(2000))
    monkeypatch.setattr(observe, "WALK_MAX", 0.0)  # a walk of more than one step is too long
    observer.tick()
    (uid,) = service.domains
    detail = observer._detail[uid]
    assert detail.cost >= observe.WALK_MAX and detail.agents == {}  # no split from a walk
    walked_at = detail.at
    snap = observer.snapshot
    assert snap is not None
    (big,) = snap.domains[uid].per_agent
    assert big.name == "big" and big.logical_bytes > 0  # the store's counters, as always
    observer.tick()
    assert observer._detail[uid].at == walked_at  # not tried again
    client.close()
    service.close_all()


def test_the_daemon_reads_its_own_pss_again_only_within_the_same_budget() -> None:
    service = Service()
    observer = observe.Observer(service)
    agent = Client(InProcessTransport(service), name="a")
    agent.alloc_smu("blob", b"b" * 100)
    (uid,) = service.domains

    def pss() -> int:
        snap = observer.take()
        daemon = snap.domains[uid].daemon
        assert daemon is not None
        return daemon.pss_bytes

    measured = pss()
    assert measured > 1 << 20  # this interpreter, read from /proc
    at, _cost, _ = observer._pss
    # Pretend the reading took 100 s: the next may not come for 100 / DETAIL_BUDGET seconds.
    observer._pss = (at, 100.0, 12345)
    assert pss() == 12345
    observer._pss = (at, 0.0, 12345)  # free: read at the next tick
    assert pss() > 1 << 20
    agent.close()
    service.close_all()


def test_recent_stats_are_the_snapshot_and_cost_no_walk() -> None:
    service = Service()
    observer = service.observer = observe.Observer(service)
    agent = Client(InProcessTransport(service), name="reader")
    agent.alloc_smu("blob", b"b" * 100)
    fresh = agent.get_stats(recent=True)  # no snapshot yet: computed
    assert isinstance(fresh, StoreStats) and fresh.logical_bytes == 100
    observer.tick()
    agent.alloc_smu("blob", b"c" * 100)
    recent = agent.get_stats(recent=True, daemon=True)
    assert isinstance(recent, StoreStats)
    assert recent.logical_bytes == 100  # as of the tick
    assert recent.daemon is not None and recent.daemon.agents_by_state["active"] == 1
    now = agent.get_stats()
    assert isinstance(now, StoreStats) and now.logical_bytes == 200
    agent.close()
    service.close_all()


def test_the_server_loop_ticks(tmp_path: pathlib.Path) -> None:
    """The loop calls maintenance and the observer about once a second, even when idle."""
    import socket
    import threading

    service = Service()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s.sock"))
    listener.listen()
    server = Server(service, listener)
    ticked = threading.Event()
    server.on_tick.append(ticked.set)
    server.on_tick.append(server.stop)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    assert ticked.wait(10)
    thread.join(10)
    assert not thread.is_alive()


def test_a_stop_asked_for_before_the_loop_starts_ends_it(tmp_path: pathlib.Path) -> None:
    """SIGTERM between installing the handlers and entering the loop is not lost."""
    import socket
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s.sock"))
    listener.listen()
    server = Server(Service(), listener)
    server.stop()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
