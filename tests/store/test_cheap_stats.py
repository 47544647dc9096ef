"""``get_stats(cheap=True)``: the same totals without the walk over every chunk reference."""

from __future__ import annotations

import dataclasses

import pytest

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


def test_whole_store_split_matches_each_agents_own(store: Store) -> None:
    """The store-wide walk (refs grouped by agent once) gives every agent the split its own
    ``get_stats(agent)`` computes."""
    agents = [store.register_agent(f"agent-{i}") for i in range(5)]
    shared = text(3, 30_000)
    for i, agent in enumerate(agents):
        store.alloc_smu("tool_def", shared, agent)
        store.alloc_smu("tool_result", text(10 + i, 5_000 + 999 * i), agent)
        chat = store.alloc_smu("conversation", [message(j) for j in range(i * 4)], agent)
        if i % 2:
            store.demote(chat)
    full = store.get_stats()
    assert isinstance(full, StoreStats)
    assert [a.name for a in full.per_agent] == [a.name for a in agents]
    for agent, mine in zip(agents, full.per_agent, strict=True):
        assert store.get_stats(agent) == mine
        assert mine.unique_bytes and mine.shared_bytes  # own results, the shared catalogue


@pytest.mark.parametrize("seed", range(6))
def test_the_split_matches_a_walk_of_every_holder(store: Store, seed: int) -> None:
    """Forks across agents, histories shared by name and repeated messages: each agent's
    unique/shared/compressed bytes equal what a plain set walk over everything it holds says."""
    import random

    from agentmem.states import Tier
    from agentmem.store.conversations import newest_first
    from agentmem.store.records import Ref

    rng = random.Random(seed)
    agents = [store.register_agent(f"agent-{i}") for i in range(4)]
    convs = []
    for _ in range(6):
        owner = rng.choice(agents)
        convs.append(store.alloc_smu("conversation", [message(rng.randrange(40))], owner))
    for _ in range(60):
        h = rng.choice(convs)
        roll = rng.random()
        if roll < 0.5:
            store.extend(h, [message(rng.randrange(60)) for _ in range(rng.randint(1, 4))])
        elif roll < 0.7:
            convs.append(store.fork(h))
        elif roll < 0.85:
            target = rng.choice(agents)
            convs.append(store.share_content(h, target))
        elif roll < 0.95 and len(convs) > 2:
            convs.remove(h)
            store.release(h)
        else:
            store.demote(h)
    for i, agent in enumerate(agents):
        store.alloc_smu("tool_result", text(100 + i % 2, 6_000), agent)  # two agents share one

    holders: dict[int, set[int]] = {}  # id(chunk) -> agents
    entries = {}
    held: dict[int, set[int]] = {a.agent_id: set() for a in agents}
    for ref in store.refs.values():
        items = [ref.smu] if isinstance(ref, Ref) else list(newest_first(ref))
        for holder in items:
            for e in holder.chunks:
                holders.setdefault(id(e), set()).add(ref.agent.agent_id)
                entries[id(e)] = e
                held[ref.agent.agent_id].add(id(e))
    full = store.get_stats()
    assert isinstance(full, StoreStats)
    for agent in agents:
        mine = held[agent.agent_id]
        unique = sum(entries[k].size for k in mine if holders[k] == {agent.agent_id})
        compressed = sum(entries[k].size for k in mine if entries[k].tier is not Tier.HOT)
        (stats,) = [a for a in full.per_agent if a.name == agent.name]
        assert stats.unique_bytes == unique
        assert stats.shared_bytes == sum(entries[k].size for k in mine) - unique
        assert stats.compressed_bytes == compressed
