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
