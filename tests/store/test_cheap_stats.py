"""``get_stats(cheap=True)``: the same totals without the walk over every chunk reference."""

from __future__ import annotations

import dataclasses

from agentmem.stats import StoreStats
from agentmem.store import Store
from tests.conftest import message, text


def test_cheap_stats_keep_every_total_and_skip_only_the_split(store: Store) -> None:
    a, b = store.register_agent("a"), store.register_agent("b", state="idle")
    prompt = text(1, 40_000)
    store.alloc_smu("system_prompt", prompt, a)
    store.alloc_smu("system_prompt", prompt, b)
    store.alloc_smu("tool_result", text(2, 9_000), b)
    chat = store.alloc_smu("conversation", [message(i) for i in range(20)], a)
    store.demote(chat)
    full, cheap = store.get_stats(), store.get_stats(cheap=True)
    assert isinstance(full, StoreStats) and isinstance(cheap, StoreStats)
    for agent in cheap.per_agent:
        assert (agent.unique_bytes, agent.shared_bytes, agent.compressed_bytes) == (None,) * 3
    blank = {"unique_bytes": None, "shared_bytes": None, "compressed_bytes": None}
    assert cheap.per_agent == tuple(dataclasses.replace(x, **blank) for x in full.per_agent)
    assert 0 < cheap.metadata_bytes < full.metadata_bytes  # records, not their chunk pointers
    same = dataclasses.replace(cheap, per_agent=full.per_agent, metadata_bytes=full.metadata_bytes)
    assert same == full
    assert full.per_agent[0].compressed_bytes  # a's conversation is warm
