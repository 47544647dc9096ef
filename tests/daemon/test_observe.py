"""Observability from a real daemon: the daemon section of ``get_stats``, observer sessions,
the ``agent_stats`` file and Prometheus metrics."""

from __future__ import annotations

import os
import pathlib
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentmem.client import Client, connect
from agentmem.daemon.metrics import parse_address
from agentmem.errors import PermissionDenied
from agentmem.protocol import messages as m
from agentmem.stats import StoreStats
from agentmem.testing import DaemonProcess
from tests.daemon.conftest import RawPeer, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_daemon() -> Iterator[tuple[DaemonProcess, int]]:
    port = free_port()
    with DaemonProcess(extra_args=["--metrics", f"127.0.0.1:{port}"]) as d:
        yield d, port


def stats_of(client: Client, **kw: bool) -> StoreStats:
    s = client.get_stats(**kw)
    assert isinstance(s, StoreStats)
    return s


def test_daemon_section_counts_agents_by_state_and_measures_itself(
    metrics_daemon: tuple[DaemonProcess, int],
) -> None:
    d, _ = metrics_daemon
    with (
        connect(d.socket, name="busy") as busy,
        connect(d.socket, name="resting", state="idle") as resting,
        connect(d.socket, name="watcher", observer=True) as watcher,
    ):
        busy.alloc_smu("system_prompt", b"shared prompt " * 100)
        resting.alloc_smu("system_prompt", b"shared prompt " * 100)
        s = stats_of(watcher, daemon=True)
        assert s.daemon is not None
        assert s.daemon.pid == d.pid
        assert s.daemon.pss_bytes > 1 << 20  # an interpreter with the store loaded
        assert s.daemon.agents_by_state == {"active": 1, "paused": 0, "idle": 1}
        assert s.daemon.observers == 1
        assert s.daemon.connections >= 3
        assert s.daemon.segment_bytes >= 4096 and s.daemon.segments >= 1
        assert s.daemon.requests > 0
        # The observer registered no agent.
        assert sorted(a.name for a in s.per_agent) == ["busy", "resting"]
        assert stats_of(busy).daemon is None  # only when asked


def test_a_reply_without_the_daemon_flag_has_no_daemon_key(
    metrics_daemon: tuple[DaemonProcess, int],
) -> None:
    d, _ = metrics_daemon
    with RawPeer(d.socket) as peer:
        peer.hello("raw-old-client")
        plain = peer.call(m.OP_GET_STATS, agent=None)
        assert "daemon" not in plain  # a client that predates the section reads it as before
        full = peer.call(m.OP_GET_STATS, agent=None, daemon=True)
        assert set(full["daemon"]) >= {"pid", "pss_bytes", "agents_by_state", "uptime_seconds"}


def test_an_observer_may_only_read_statistics(metrics_daemon: tuple[DaemonProcess, int]) -> None:
    d, _ = metrics_daemon
    with connect(d.socket, name="peeker", observer=True) as peeker:
        with pytest.raises(PermissionDenied):
            peeker.alloc_smu("blob", b"not for observers")
        assert peeker.alloc_profile()["samples"] >= 0
        # Observers need no unique name: they are not agents.
        with connect(d.socket, name="peeker", observer=True) as again:
            assert stats_of(again, daemon=True).daemon is not None


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the metrics page: name -> {sorted labels: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def test_metrics_render_the_stats_with_bounded_agent_labels(
    metrics_daemon: tuple[DaemonProcess, int],
) -> None:
    d, port = metrics_daemon
    uid = str(os.getuid())
    clients = [connect(d.socket, name=f"swarm-{i:02d}") for i in range(53)]
    try:
        for i, c in enumerate(clients):
            c.alloc_smu("tool_result", os.urandom(1000 * (i + 1)))  # swarm-52 holds most
        want = stats_of(clients[0])

        def seen() -> bool:
            got = scrape(port).get("agentmem_logical_bytes", {})
            return got.get((("domain", uid),)) == want.logical_bytes

        wait_until(seen, "the metrics show the swarm (published at the next tick)")
        got = scrape(port)
        agents = got["agentmem_agent_logical_bytes"]
        names = {dict(k)["agent"] for k in agents}
        assert len(names) == 51  # the top 50 by logical bytes and _other
        assert "swarm-52" in names and "swarm-00" not in names
        assert agents[(("agent", "swarm-52"), ("domain", uid))] == 53_000
        # _other sums the three smallest: 1000 + 2000 + 3000 bytes.
        assert agents[(("agent", "_other"), ("domain", uid))] == 6000
        assert got["agentmem_logical_bytes"][(("domain", uid),)] == want.logical_bytes
        assert got["agentmem_unique_bytes"][(("domain", uid),)] == want.unique_bytes
        assert got["agentmem_dedup_ratio"][(("domain", uid),)] == pytest.approx(want.dedup_ratio)
        assert got["agentmem_agents"][(("domain", uid), ("state", "active"))] == 53
        hot = got["agentmem_tier_physical_bytes"][(("domain", uid), ("tier", "hot"))]
        assert hot == want.hot.physical_bytes
        assert got["agentmem_daemon_pss_bytes"][()] > 0
        assert got["agentmem_daemon_requests_total"][()] > 53
        assert got["agentmem_daemon_cpu_seconds_total"][()] > 0
        assert got["agentmem_compress_cpu_seconds_total"][(("domain", uid),)] >= 0
        unique = got["agentmem_agent_unique_bytes"]
        assert unique[(("agent", "swarm-52"), ("domain", uid))] == 53_000
    finally:
        for c in clients:
            c.close()


def read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_the_stats_file_is_rewritten_every_second_and_removed_at_exit() -> None:
    d = DaemonProcess().start()
    path = os.path.join(d.dir, "agent_stats")
    try:
        with connect(d.socket, name="file-watcher-agent") as agent:
            agent.alloc_smu("blob", b"z" * 5000)
            wait_until(lambda: "file-watcher-agent" in read_text(path), "the file names the agent")
            text = read_text(path)
            assert f"## uid {os.getuid()}\n" in text
            assert "DaemonPSS:" in text and "AgentsActive:" in text
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert not [n for n in os.listdir(d.dir) if n.endswith(".tmp")]
        wait_until(lambda: "file-watcher-agent" not in read_text(path), "the agent is gone")
    finally:
        d.kill()
    assert not os.path.exists(path)


def test_metrics_refuse_an_address_beyond_loopback_unless_told() -> None:
    assert parse_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    assert parse_address("localhost:0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="not a loopback"):
        parse_address("0.0.0.0:9100")
    assert parse_address("0.0.0.0:9100", public=True) == ("0.0.0.0", 9100)
    for bad in ("9100", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "example.org:9100"):
        with pytest.raises(ValueError, match="metrics"):
            parse_address(bad)
    out = subprocess.run(
        [sys.executable, "-m", "agentmem", "daemon", "--metrics", "0.0.0.0:9100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "--metrics-public" in out.stderr


def test_a_busy_metrics_port_fails_the_daemon_command_itself() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = DaemonProcess(extra_args=["--metrics", f"127.0.0.1:{port}"])
        with pytest.raises(subprocess.CalledProcessError):
            d.start()  # before detaching: the command fails, no daemon is left behind
    assert not os.path.exists(d.socket + ".lock")


def test_the_daemon_says_where_its_cpu_went(tmp_path: pathlib.Path) -> None:
    """Compressing, decoding, journal syncs, maintenance and statistics each have a figure,
    and together they stay within the process's own CPU."""
    words = [f"word{i}" for i in range(4000)]
    history = [" ".join(words[(i * 37) % 3000 : (i * 37) % 3000 + 60]) for i in range(3000)]
    with (
        DaemonProcess(extra_args=["--state-dir", str(tmp_path)]) as d,
        connect(d.socket, name="writer", autostart=False) as c,
    ):
        h = c.alloc_smu("conversation", [])
        c.extend(h, history)  # one acknowledged batch: one journal sync at least
        assert c.demote(h) > 0  # compressed, and each frame decoded once to verify it
        before = stats_of(c).tiering
        assert before is not None
        assert c.messages(h, 0, 5) == [m.encode() for m in history[:5]]  # decoded to read

        def ticked() -> bool:
            s = stats_of(c, daemon=True)
            return s.daemon is not None and s.daemon.statistics_cpu_seconds > 0

        wait_until(ticked, "a statistics tick")
        s = stats_of(c, daemon=True)
    t, daemon = s.tiering, s.daemon
    assert t is not None and daemon is not None
    assert t.compress_cpu_seconds > 0 and t.journal_syncs >= 1
    assert t.decode_cpu_seconds > before.decode_cpu_seconds > 0
    assert t.journal_sync_cpu_seconds >= 0
    accounted = daemon.maintenance_cpu_seconds + daemon.statistics_cpu_seconds
    assert 0 < accounted <= daemon.cpu_seconds
    assert t.compress_cpu_seconds + t.decode_cpu_seconds <= daemon.cpu_seconds
    assert 0 < daemon.gc_cpu_seconds <= daemon.cpu_seconds  # thousands of messages: young passes
