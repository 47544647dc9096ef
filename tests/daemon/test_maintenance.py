from __future__ import annotations

from agentmem.client import Client
from agentmem.daemon import maintenance
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import Service
from tests.conftest import text


def test_tick_compacts_a_domain_with_many_holes_only() -> None:
    service = Service()
    client = Client(InProcessTransport(service), name="holes")
    # Prompts share segments (private content this large gets a segment of its own).
    handles = [client.alloc_smu("system_prompt", text(i, 500_000)) for i in range(60)]
    assert maintenance.tick(service) == 0  # nothing freed yet
    keep = set(range(0, 60, 4))
    for i, h in enumerate(handles):
        if i not in keep:
            client.release(h)  # three holes in every four items: no segment empties
    (domain,) = service.domains.values()
    before = sum(seg.used for seg in domain.store.hot)
    assert maintenance.tick(service) > 0
    after = sum(seg.used for seg in domain.store.hot)
    assert after < before
    for i in sorted(keep):
        assert bytes(client.read(handles[i])) == text(i, 500_000)
    client.close()
    service.close_all()


def test_daemon_keeps_hot_bytes_within_its_budget_idle_agents_first() -> None:
    import agentmem
    from agentmem.stats import AgentStats, StoreStats
    from agentmem.testing import DaemonProcess
    from tests.conftest import message
    from tests.daemon.conftest import wait_until

    with DaemonProcess(extra_args=["--hot-budget", "300K"]) as d:
        busy = agentmem.connect(d.socket, name="busy")
        lazy = agentmem.connect(d.socket, name="lazy", state="idle")
        busy.alloc_smu("conversation", [message(i) for i in range(120)])
        lazy.alloc_smu("conversation", [message(500 + i) for i in range(120)])

        def within_budget() -> bool:
            s = busy.get_stats()
            assert isinstance(s, StoreStats)
            return s.hot.raw_bytes <= 300 << 10

        wait_until(within_budget, "the maintenance tick demotes down to the budget")
        lazy_stats, busy_stats = lazy.get_stats("lazy"), busy.get_stats("busy")
        assert isinstance(lazy_stats, AgentStats) and isinstance(busy_stats, AgentStats)
        # The idle agent's content went first (its older messages, then, if need be, the
        # rest); the active agent kept at least its recent messages hot.
        assert lazy_stats.compressed_bytes is not None and busy_stats.compressed_bytes is not None
        assert lazy_stats.compressed_bytes >= (300 << 10) // 2 or (
            lazy_stats.compressed_bytes > busy_stats.compressed_bytes
        )
        assert busy_stats.compressed_bytes < busy_stats.logical_bytes
        busy.close()
        lazy.close()
