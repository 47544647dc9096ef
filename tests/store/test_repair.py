"""``Store.repair`` (``agentmem check --repair``): drift fixed, the unfixable named."""

from __future__ import annotations

from agentmem.config import Config
from agentmem.hashing import chunk_id
from agentmem.ids import ChunkId
from agentmem.states import SMUType, Tier
from agentmem.store import Store
from agentmem.store.records import ChunkEntry
from tests.conftest import message, text

CFG = Config(segment_bytes=1 << 20)


def test_repair_sets_drifted_counts_and_frees_unreachable_entries() -> None:
    with Store(CFG) as store:
        a = store.register_agent("a")
        h = store.alloc_smu(SMUType.TOOL_RESULT, text(1, 20_000), a)
        conv = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(5)], a)
        smu = store.refs[h].smu  # type: ignore[union-attr]
        smu.refs += 2  # drift: would never be freed
        node = store.refs[conv].path[2]  # type: ignore[union-attr]
        node.refs -= 1  # drift: would be freed too early
        stray = b"x" * 3000
        entry = ChunkEntry(chunk_id(stray), len(stray))
        store.hot.put_one(entry, stray, SMUType.BLOB)
        store.chunks[ChunkId(entry.id)] = entry  # indexed, held by nothing
        before = store.check()
        assert len(before.drift) == 2 and len(before.orphans) == 1
        report, fixed, unfixable = store.repair()
        assert report == before and unfixable == []
        assert len(fixed) == 3 and store.check().ok
        live = store.hot.live_bytes
        store.release(h)  # the count is right again: its bytes are freed
        assert store.hot.live_bytes == live - 20_000
        assert [bytes(m) for m in store.messages(conv)] == [message(i) for i in range(5)]


def test_repair_names_corrupt_bytes_it_cannot_bring_back() -> None:
    with Store(CFG) as store:
        a = store.register_agent("a")
        h = store.alloc_smu(SMUType.TOOL_RESULT, text(2, 50_000), a)
        store.demote(h)
        group = store.refs[h].smu.chunks[0].loc  # type: ignore[union-attr]
        assert group.tier is Tier.WARM
        frame = bytearray(group.frame)  # type: ignore[union-attr]
        frame[-5] ^= 0xFF
        group.frame = bytes(frame)  # type: ignore[union-attr]
        store.warm._cache.clear()
        _report, _fixed, unfixable = store.repair()
        assert unfixable and all("lost" in line for line in unfixable)
