"""The cold tier: packs on disk, read back verified, rebuilt on start, compacted, typed errors."""

from __future__ import annotations

import os
import pathlib

import pytest

from agentmem.config import Config
from agentmem.errors import DiskFull, InvalidArgument, PackUnreadable
from agentmem.states import SMUType, Tier
from agentmem.store import Store
from agentmem.store.cold import FILE_HEADER, RECORD
from tests.conftest import message, text

CFG = Config(dict_train_bytes=64 << 10, dict_size=16 << 10, segment_bytes=1 << 20)


def tiers(store: Store, h: int) -> set[Tier]:
    ref = store.refs[h]
    if hasattr(ref, "path"):
        return {e.tier for n in ref.path for e in n.chunks}  # type: ignore[union-attr]
    return {e.tier for e in ref.smu.chunks}  # type: ignore[union-attr]


def packs(state: pathlib.Path) -> list[pathlib.Path]:
    return sorted((state / "packs").glob("pack-*.amp"))


def test_no_state_dir_no_cold_tier() -> None:
    with Store(CFG) as store:
        a = store.register_agent("a")
        h = store.alloc_smu(SMUType.TOOL_RESULT, text(1, 10_000), a)
        assert store.cold is None
        with pytest.raises(InvalidArgument, match="no cold tier"):
            store.demote(h, to=Tier.COLD)


def test_content_goes_cold_and_reads_back_promoted(tmp_path: pathlib.Path) -> None:
    with Store(CFG, state_dir=str(tmp_path)) as store:
        a = store.register_agent("a")
        blob = text(2, 300_000)
        h = store.alloc_smu(SMUType.TOOL_RESULT, blob, a)
        conv = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(50)], a)
        store.demote(conv)  # hot -> warm first: cold takes warm and hot chunks alike
        assert store.demote(h, to=Tier.COLD) == len(blob)
        assert store.demote(conv, to=Tier.COLD) > 0
        assert tiers(store, h) == {Tier.COLD} and tiers(store, conv) == {Tier.COLD}
        cold = store.cold
        assert cold is not None
        assert cold.stats().raw_bytes == len(blob) + sum(len(message(i)) for i in range(50))
        assert cold.disk_bytes < cold.stats().raw_bytes  # compressed on disk
        assert store.check().ok
        assert bytes(store.read(h)) == blob
        assert tiers(store, h) == {Tier.HOT}
        assert [bytes(m) for m in store.messages(conv, 10, 12)] == [message(10), message(11)]
        assert store.check().ok and store.check().verified == len(store.chunks)


def test_freed_cold_content_deletes_or_compacts_its_packs(tmp_path: pathlib.Path) -> None:
    cfg = Config(segment_bytes=1 << 20)
    with Store(cfg, state_dir=str(tmp_path)) as store:
        a = store.register_agent("a")
        handles = [store.alloc_smu(SMUType.TOOL_RESULT, text(10 + i, 100_000), a) for i in range(6)]
        cold = store.cold
        assert cold is not None and store.demote(handles[0], to=Tier.COLD)
        assert cold._current is not None
        cold.pack_bytes = cold._current.size + 1  # two records a pack
        for h in handles[1:]:
            store.demote(h, to=Tier.COLD)
        assert len(packs(tmp_path)) >= 3
        for h in handles[::2]:  # free every other one: sparse packs
            store.release(h)
        reclaimed = cold.compact()
        assert reclaimed > 0
        for h in handles[1::2]:
            assert bytes(store.read(h)) == text(10 + handles.index(h), 100_000)
        for h in handles[1::2]:
            store.release(h)
        assert store.cold.stats().chunks == 0  # type: ignore[union-attr]
        # only the pack being appended to may remain, and it holds nothing live
        assert len(packs(tmp_path)) <= 1
        assert store.check().ok


def test_disk_full_is_typed_and_keeps_the_content_where_it_was(tmp_path: pathlib.Path) -> None:
    with Store(CFG, state_dir=str(tmp_path)) as store:
        a = store.register_agent("a")
        keep = store.alloc_smu(SMUType.TOOL_RESULT, text(3, 50_000), a)
        store.demote(keep, to=Tier.COLD)  # opens a pack
        cold = store.cold
        assert cold is not None and cold._current is not None
        real = cold._current.fd
        # A real ENOSPC from the kernel: writes to /dev/full fail with it.
        cold._current.fd = os.open("/dev/full", os.O_WRONLY)
        h = store.alloc_smu(SMUType.TOOL_RESULT, text(4, 80_000), a)
        with pytest.raises(DiskFull):
            store.demote(h, to=Tier.COLD)
        os.close(cold._current.fd)
        cold._current.fd = real
        assert tiers(store, h) == {Tier.HOT}
        assert bytes(store.read(h)) == text(4, 80_000)
        assert bytes(store.read(keep)) == text(3, 50_000)
        assert store.check().ok


def test_a_damaged_record_is_typed_and_other_data_still_reads(tmp_path: pathlib.Path) -> None:
    with Store(CFG, state_dir=str(tmp_path)) as store:
        a = store.register_agent("a")
        first = store.alloc_smu(SMUType.TOOL_RESULT, text(5, 40_000), a)
        second = store.alloc_smu(SMUType.TOOL_RESULT, text(6, 40_000), a)
        store.demote(first, to=Tier.COLD)
        store.demote(second, to=Tier.COLD)
        (pack,) = packs(tmp_path)
        with open(pack, "r+b") as f:  # flip a byte inside the first record's frame
            f.seek(FILE_HEADER.size + RECORD.size + 100)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0xFF]))
        store.cold._cache.clear()  # type: ignore[union-attr]
        with pytest.raises(PackUnreadable):
            store.read(first)
        assert bytes(store.read(second)) == text(6, 40_000)
        report = store.check()
        assert not report.ok and len(report.corrupt) > 0


def test_restart_finds_conversations_in_earlier_packs(tmp_path: pathlib.Path) -> None:
    msgs = [message(i) for i in range(40)]
    with Store(CFG, state_dir=str(tmp_path)) as store:
        a = store.register_agent("a")
        conv = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
        store.demote(conv, to=Tier.COLD)
        store.sync()
        # the daemon dies here: no release is journaled (close() writes nothing)
    with Store(CFG, state_dir=str(tmp_path)) as again:
        assert again.restored.conversations == 1
        assert again.restored.cold_chunks == 40  # placed in the old pack, not stored again
        assert tiers(again, conv) == {Tier.COLD}
        assert [bytes(m) for m in again.messages(conv)] == msgs
        assert again.check().ok


def test_a_torn_pack_tail_is_cut_at_start(tmp_path: pathlib.Path) -> None:
    with Store(CFG, state_dir=str(tmp_path)) as store:
        a = store.register_agent("a")
        conv = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(30)], a)
        store.demote(conv, to=Tier.COLD)
    (pack,) = packs(tmp_path)
    size = pack.stat().st_size
    with open(pack, "ab") as f:
        f.write(b"AR\x03\x00garbage that a crash left behind")
    with Store(CFG, state_dir=str(tmp_path)) as again:
        assert again.restored.truncated_bytes > 0
        assert pack.stat().st_size == size  # cut back to its last whole record
        assert [bytes(m) for m in again.messages(conv)] == [message(i) for i in range(30)]


def test_far_memory_takes_demoted_content_uncompressed(tmp_path: pathlib.Path) -> None:
    """A simulated topology: node 0 with CPUs, node 1 memory only (how CXL memory appears)."""
    from agentmem.store.numa import FarMemory, describe, read_topology

    for node, cpus, mem_kb in ((0, "0-1", 8 << 20), (1, "", 64 << 20)):
        d = tmp_path / "sys" / "devices" / "system" / "node" / f"node{node}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpus + "\n")
        (d / "meminfo").write_text(f"Node {node} MemTotal:       {mem_kb} kB\n")
    bound: list[tuple[int, int, int]] = []
    far = FarMemory.detect(tmp_path / "sys", mbind=lambda *call: bound.append(call))
    assert far is not None and far.node == 1
    assert "node 1" in describe(read_topology(tmp_path / "sys"))
    with Store(CFG, far_memory=far, state_dir=str(tmp_path / "state")) as store:
        a = store.register_agent("a")
        blob = text(8, 200_000)
        h = store.alloc_smu(SMUType.TOOL_RESULT, blob, a)
        near_before = store.hot.live_bytes
        assert store.demote(h) == len(blob)
        # out of near RAM (the budget's bytes), still uncompressed in a segment on node 1
        assert store.hot.live_bytes == near_before - len(blob)
        assert store.hot.far_bytes == len(blob) and store.warm.stats().chunks == 0
        assert bound and all(node == 1 and addr % 4096 == 0 for addr, _n, node in bound)
        assert {c.handle for c in store.candidates(Tier.WARM)} == {h}
        assert store.candidates(Tier.HOT) == []
        assert bytes(store.read(h)) == blob  # read in place
        # the next step down compresses it, out of far memory
        assert store.demote(h, to=Tier.COLD) == len(blob)
        assert store.hot.far_bytes == 0 and tiers(store, h) == {Tier.COLD}
        assert store.check().ok


def test_without_far_memory_the_tier_is_off_and_says_why() -> None:
    with Store(CFG) as store:  # this machine: detected from /sys
        assert store.far_memory.startswith("far memory:")
        stats = store.get_stats()
        assert stats.tiering is not None and stats.tiering.far_memory == store.far_memory  # type: ignore[union-attr]
    with Store(CFG, far_memory=None) as off:
        assert off.hot.far is None and "off" in off.far_memory


def test_unique_bytes_count_content_in_every_tier(tmp_path: pathlib.Path) -> None:
    with Store(CFG, state_dir=str(tmp_path)) as store:
        a, b = store.register_agent("a"), store.register_agent("b")
        blob = text(3, 200_000)
        h = store.alloc_smu(SMUType.TOOL_RESULT, blob, a)
        store.alloc_smu(SMUType.TOOL_RESULT, blob, b)  # the same bytes, once
        before = store.get_stats()
        store.demote(h, to=Tier.COLD)
        after = store.get_stats()
        assert before.unique_bytes == after.unique_bytes == len(blob)  # type: ignore[union-attr]
        assert after.dedup_ratio == 2.0  # type: ignore[union-attr]
