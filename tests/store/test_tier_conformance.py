"""Every tier passes the same tests: put, load, release, stats."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from agentmem.codec import DictionarySet
from agentmem.errors import CorruptFrame
from agentmem.hashing import chunk_id
from agentmem.states import SMUType
from agentmem.store.hot import HotTier
from agentmem.store.records import ChunkEntry, WarmGroup
from agentmem.store.warm import WarmTier
from tests.conftest import text

TierFactory = Callable[[], HotTier | WarmTier]

FACTORIES: dict[str, TierFactory] = {
    "hot": lambda: HotTier(1 << 20),
    "warm": lambda: WarmTier(DictionarySet(train_bytes=1 << 20, dict_size=4096)),
}


@pytest.fixture(params=sorted(FACTORIES))
def tier(request: pytest.FixtureRequest) -> Iterator[HotTier | WarmTier]:
    t = FACTORIES[request.param]()
    yield t
    t.close()


def entries_for(payloads: list[bytes]) -> list[ChunkEntry]:
    return [ChunkEntry(chunk_id(p), len(p)) for p in payloads]


def test_put_then_load_returns_the_bytes(tier: HotTier | WarmTier) -> None:
    payloads = [text(i, 100 + 997 * i) for i in range(40)]
    entries = entries_for(payloads)
    tier.put(entries, payloads, SMUType.CONVERSATION)
    for e, p in zip(entries, payloads, strict=True):
        assert e.tier is tier.tier
        assert bytes(tier.load(e)) == p
    s = tier.stats()
    assert s.chunks == 40 and s.raw_bytes == sum(map(len, payloads))
    assert s.containers >= 1 and s.stored_bytes > 0


def test_release_returns_stats_to_zero(tier: HotTier | WarmTier) -> None:
    payloads = [text(i, 3000) for i in range(10)]
    entries = entries_for(payloads)
    tier.put(entries, payloads, SMUType.TOOL_RESULT)
    for e in entries:
        tier.release(e)
    s = tier.stats()
    assert s.chunks == 0 and s.raw_bytes == 0
    assert s.containers <= 1  # the hot tier keeps its open segment


def test_loaded_views_are_read_only(tier: HotTier | WarmTier) -> None:
    p = text(1, 5000)
    (e,) = entries_for([p])
    tier.put([e], [p], SMUType.BLOB)
    view = tier.load(e)
    with pytest.raises(TypeError):
        view[0] = 0  # type: ignore[index]


def test_warm_tier_detects_corruption() -> None:
    warm = WarmTier(DictionarySet(train_bytes=1 << 20, dict_size=4096))
    p = text(2, 20_000)
    (e,) = entries_for([p])
    warm.put([e], [p], SMUType.TOOL_RESULT)
    assert isinstance(e.loc, WarmGroup)
    bad = bytearray(e.loc.frame)
    bad[len(bad) // 2] ^= 0x55
    e.loc.frame = bytes(bad)
    with pytest.raises(CorruptFrame):
        warm.load(e)


def test_incompressible_chunks_cost_no_more_than_a_header() -> None:
    import random

    warm = WarmTier(DictionarySet(train_bytes=1 << 20, dict_size=4096))
    p = random.Random(3).randbytes(50_000)
    (e,) = entries_for([p])
    warm.put([e], [p], SMUType.BLOB)
    assert warm.stats().stored_bytes <= len(p) + 16


def test_warm_tier_keeps_decoded_groups_within_its_byte_budget() -> None:
    from agentmem import constants

    group = 256 << 10
    warm = WarmTier(DictionarySet(train_bytes=1 << 20, dict_size=4096), group_bytes=group)
    payloads = [text(i, 64 << 10) for i in range(4 * constants.DECODED_CACHE_BYTES // group * 4)]
    entries = entries_for(payloads)
    warm.put(entries, payloads, SMUType.CONVERSATION)
    for e, p in zip(entries, payloads, strict=True):
        assert bytes(warm.load(e)) == p
        cached = sum(view.nbytes for _, view in warm._cache.values())
        assert cached == warm._cache.nbytes <= constants.DECODED_CACHE_BYTES
    assert len(warm._cache) == constants.DECODED_CACHE_BYTES // group
    for e in entries:  # groups freed leave the cache with their bytes
        warm.release(e)
    assert warm._cache.nbytes == 0 and not warm._cache


def test_warm_tier_caches_one_group_larger_than_its_budget() -> None:
    from agentmem import constants

    size = constants.DECODED_CACHE_BYTES + (64 << 10)
    warm = WarmTier(DictionarySet(train_bytes=1 << 20, dict_size=4096), group_bytes=size)
    payloads = [text(i, size // 4) for i in range(8)]
    entries = entries_for(payloads)
    warm.put(entries, payloads, SMUType.CONVERSATION)
    first = warm.load(entries[0])
    assert warm.load(entries[1]).obj is first.obj  # the same decoded group, not decoded again
    assert len(warm._cache) == 1 and warm._cache.nbytes > constants.DECODED_CACHE_BYTES
