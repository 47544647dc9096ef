from __future__ import annotations

import os

import pytest

from agentmem.client import Client
from agentmem.daemon import maintenance
from agentmem.daemon.inprocess import InProcessTransport
from agentmem.daemon.service import Service
from agentmem.store import layout
from tests.conftest import text


def test_tick_compacts_a_domain_with_many_holes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # One step a pass: the compaction goes on across passes, each asking for the next soon.
    monkeypatch.setattr(maintenance, "COMPACT_PASS_SECONDS", 0.0)
    monkeypatch.setattr(layout, "SCAN_STEP", 16)
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
    reclaimed = maintenance.tick(service)
    passes = 1
    while domain.store.compaction is not None:
        assert service.maintenance_backlog  # the next pass comes soon
        assert bytes(client.read(handles[0])) == text(0, 500_000)  # served in between
        reclaimed += maintenance.tick(service)
        passes += 1
    assert passes > 2 and reclaimed > 0
    assert not service.maintenance_backlog
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


def _anonymous_kib() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise AssertionError("no Anonymous line")


def test_give_back_returns_the_pages_of_freed_frames() -> None:
    import subprocess
    import sys

    from agentmem import heap

    # In a child of its own: what the test process's heap holds is not this test's to judge.
    code = """
import os
from agentmem import heap
from tests.daemon.test_maintenance import _anonymous_kib
held, pins = [], []
for i in range(3000):  # ~120 MB of 40 KB objects, each followed by a small one kept
    held.append(os.urandom(40_000))
    pins.append(bytearray(600))
before = _anonymous_kib()
del held
freed = _anonymous_kib()
assert heap.give_back()
after = _anonymous_kib()
print(before, freed, after)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="."
    ).stdout.split()
    before, freed, after = (int(x) for x in out)
    assert freed > before - 20_000  # free() alone kept most of the pages (the pins hold them)
    assert after < before - 100_000  # given back: over 100 of the ~117 MiB
    assert heap.give_back() is True  # glibc here; repeatable


def test_tick_gives_the_heap_back_once_frames_drop() -> None:
    service = Service()
    client = Client(InProcessTransport(service), name="frames")
    handles = [
        client.alloc_smu("tool_result", os.urandom(1 << 20) + text(i, 1 << 20)) for i in range(24)
    ]
    for h in handles:
        client.demote(h)
    (domain,) = service.domains.values()
    assert domain.store.warm.frame_bytes > maintenance.TRIM_AFTER_BYTES
    maintenance.tick(service)
    assert service.heap_trims == 0  # no frame dropped yet
    for h in handles[:20]:
        client.release(h)
    maintenance.tick(service)
    assert service.heap_trims == 1
    maintenance.tick(service)
    assert service.heap_trims == 1  # once per drop, not every tick
    client.close()
    service.close_all()


def test_an_idle_codec_gives_its_contexts_and_digests_back() -> None:
    from agentmem.codec import CODECS, ZSTD_CODEC_ID, ZstdCodec
    from tests.conftest import message

    codec = CODECS[ZSTD_CODEC_ID]
    assert isinstance(codec, ZstdCodec)
    from agentmem.config import Config

    service = Service(Config(dict_train_bytes=256 << 10, dict_size=4096))
    client = Client(InProcessTransport(service), name="idle-codec")
    messages = [message(i) for i in range(400)]  # enough to train the conversation dictionary
    chats = [client.alloc_smu("conversation", messages[i::4]) for i in range(4)]
    for h in chats:
        client._op("demote", handle=h)
    (domain,) = service.domains.values()
    dicts = domain.store.dictionaries
    assert codec._contexts.compressors and len(dicts)
    digested = [dicts[i] for i in dicts if dicts[i]._zstd]
    assert digested  # the conversation dictionary, digested for its compressor
    releases = service.codec_releases
    maintenance.tick(service)  # sees the demotions' use of the codec
    for _ in range(maintenance.CODEC_IDLE_TICKS - 1):
        maintenance.tick(service)
    assert codec._contexts.compressors and service.codec_releases == releases  # not yet
    maintenance.tick(service)
    assert service.codec_releases == releases + 1
    assert not codec._contexts.compressors and not codec._contexts.decompressors
    assert not any(dicts[i]._zstd for i in dicts)
    maintenance.tick(service)
    assert service.codec_releases == releases + 1  # once per idle spell
    # Used again: everything still reads, the contexts are built again.
    assert client.messages(chats[1]) == messages[1::4]
    assert codec._contexts.decompressors
    client.close()
    service.close_all()


def test_an_agent_that_woke_and_read_its_history_is_demoted_again_without_compressing() -> None:
    import agentmem
    from agentmem.stats import StoreStats
    from agentmem.testing import DaemonProcess
    from tests.conftest import message
    from tests.daemon.conftest import wait_until

    history = [message(i) for i in range(200)]
    env = {
        **os.environ,
        "AGENTMEM_IDLE_AGENT_WARM_SECONDS": "1",
        "AGENTMEM_WARM_GROUP_BYTES": str(64 << 10),
    }
    with DaemonProcess(env=env) as d, agentmem.connect(d.socket, name="a", state="idle") as a:
        h = a.alloc_smu("conversation", history)

        def stats() -> StoreStats:
            s = a.get_stats()
            assert isinstance(s, StoreStats) and s.tiering is not None
            return s

        def all_warm() -> bool:
            return stats().warm.raw_bytes == sum(map(len, history))

        wait_until(all_warm, "the age pass demotes the idle agent's history")
        first = stats().tiering
        assert first is not None and first.reinstated_bytes == 0
        a.set_state("active")
        assert [bytes(m) for m in a.messages(h)] == history  # promoted, frames kept
        woke = stats()
        assert woke.warm.raw_bytes == 0 and woke.tiering is not None
        # Every frame is kept only as clean copies now, and counted as RAM.
        assert woke.tiering.clean_copy_bytes == woke.warm.physical_bytes > 0
        a.set_state("idle")
        wait_until(all_warm, "the age pass demotes the history again")
        again = stats().tiering
        assert again is not None
        # Back into the same frames: all but a last group under half the group size, which
        # went into a new frame (the only compression this time).
        assert again.reinstated_bytes >= sum(map(len, history)) - (64 << 10) // 2
        assert again.clean_copy_bytes == 0
        assert [bytes(m) for m in a.messages(h)] == history
