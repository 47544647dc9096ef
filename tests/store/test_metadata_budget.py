"""The store's Python heap per conversation message, measured with tracemalloc.

Budget: 200 bytes a message, everything included (its node, chunk entry, ids, index slots,
offset, the ref's marks). Measured when this was written, 5,000 messages of ~1.7 KB in 5
conversations: ~180 B hot, ~182 B warm, ~183 B cold; the records before then (a node and an
entry per message, message ids, a node index, an int per offset, a list slot per message per
ref) cost ~375 B. Payload bytes are not on the heap when hot (memfd segments); warm frames and
trained dictionaries are, and are left out by where they were allocated (``agentmem/codec``).
"""

from __future__ import annotations

import gc
import pathlib
import tracemalloc
from collections.abc import Callable

from agentmem.config import Config
from agentmem.states import SMUType, Tier
from agentmem.store import Store, StoreStats

MESSAGES = 5_000
CONVERSATIONS = 5
BUDGET = 200


def _messages() -> list[bytes]:
    # Distinct, compressible messages of 1.6-1.9 KB (no two share a chunk).
    return [
        (b"%06d the agent read the file and wrote a test; " % i) * (34 + i % 5)
        for i in range(MESSAGES)
    ]


def _store_heap(first: tracemalloc.Snapshot) -> int:
    """Heap grown since ``first``, without what the codec allocated (frames, dictionaries)."""
    gc.collect()
    grown = 0
    for diff in tracemalloc.take_snapshot().compare_to(first, "filename"):
        if "/agentmem/codec/" not in diff.traceback[0].filename:
            grown += diff.size_diff
    return grown


def _measure(store: Store, steps: list[Callable[[list[int]], None]]) -> list[int]:
    msgs = _messages()
    agents = [store.register_agent(f"agent-{i}") for i in range(CONVERSATIONS)]
    gc.collect()
    tracemalloc.start()
    try:
        first = tracemalloc.take_snapshot()
        per = MESSAGES // CONVERSATIONS
        handles = []
        for i, agent in enumerate(agents):
            h = store.alloc_smu(SMUType.CONVERSATION, msgs[i * per : (i + 1) * per], agent)
            handles.append(h)
        out = [_store_heap(first)]
        for step in steps:
            step(handles)
            out.append(_store_heap(first))
    finally:
        tracemalloc.stop()
    return out


def test_a_message_costs_at_most_200_bytes_hot_warm_and_cold(tmp_path: pathlib.Path) -> None:
    cfg = Config(warm_after_seconds=0, idle_agent_warm_seconds=0, cold_after_seconds=0)
    with Store(cfg, state_dir=str(tmp_path), far_memory=None) as store:

        def to_warm(handles: list[int]) -> None:
            for h in handles:
                assert store.demote(h, to=Tier.WARM)  # type: ignore[arg-type]
            store.warm._cache.clear()  # decoded groups are a bounded cache, not metadata

        def to_cold(handles: list[int]) -> None:
            for h in handles:
                assert store.demote(h, to=Tier.COLD)  # type: ignore[arg-type]
            assert store.cold is not None
            store.cold._cache.clear()

        hot, warm, cold = _measure(store, [to_warm, to_cold])
        s = store.get_stats()
        assert isinstance(s, StoreStats) and s.messages == MESSAGES == s.chunks
        per_message = [round(b / MESSAGES, 1) for b in (hot, warm, cold)]
        assert max(per_message) <= BUDGET, per_message
        # The store's own estimate stays within 15 % of what is measured.
        assert abs(s.metadata_bytes - hot) <= 0.15 * hot, (s.metadata_bytes, hot)
