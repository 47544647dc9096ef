from __future__ import annotations

import pytest

from agentmem.config import Config
from agentmem.errors import (
    AgentExists,
    InvalidArgument,
    QuotaExceeded,
    StoreClosed,
    TooLarge,
    UnknownAgent,
    UnknownHandle,
    WrongType,
)
from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store import Store, StoreStats
from tests.conftest import message, text


def stats(store: Store) -> StoreStats:
    s = store.get_stats()
    assert isinstance(s, StoreStats)
    return s


def test_alloc_read_round_trip_every_type(store: Store) -> None:
    a = store.register_agent("a")
    for t in SMUType:
        if t is SMUType.CONVERSATION:
            continue
        data = text(int(t), 5000) + t.label.encode()
        h = store.alloc_smu(t, data, a)
        assert bytes(store.read(h)) == data
        assert store.smu_type(h) is t
        assert store.size(h) == len(data)


def test_types_accept_names_and_values(store: Store) -> None:
    a = store.register_agent("a")
    h1 = store.alloc_smu("system_prompt", b"x", a)
    h2 = store.alloc_smu(1, b"x", "a")
    assert store.smu_type(h1) is store.smu_type(h2) is SMUType.SYSTEM_PROMPT


def test_identical_content_is_stored_once_and_read_zero_copy(store: Store) -> None:
    prompt = text(1, 200_000)
    agents = [store.register_agent(f"agent-{i}") for i in range(10)]
    handles = [store.alloc_smu(SMUType.SYSTEM_PROMPT, prompt, a) for a in agents]
    s = stats(store)
    assert s.logical_bytes == 10 * len(prompt)
    assert s.unique_bytes == len(prompt)
    views = [store.read(h) for h in handles]
    assert all(v.readonly for v in views)
    # one mapping behind every view: zero-copy, one physical copy
    assert len({id(v.obj) for v in views}) == 1
    assert bytes(views[3]) == prompt


def test_near_duplicates_share_chunks(store: Store) -> None:
    base = text(2, 100_000)
    a = store.register_agent("a")
    for i in range(20):
        env = f"<env>cwd=/home/u/project-{i} date=2026-11-{i % 28 + 1:02d}</env>".encode()
        store.alloc_smu(SMUType.SYSTEM_PROMPT, base[:50_000] + env + base[50_000:], a)
    s = stats(store)
    assert s.logical_bytes > 20 * 100_000
    assert s.dedup_ratio > 8


def test_share_content_gives_target_its_own_handle(store: Store) -> None:
    a, b = store.register_agent("a"), store.register_agent("b")
    h = store.alloc_smu(SMUType.TOOL_DEF, b"tools" * 1000, a)
    hb = store.share_content(h, b)
    assert hb != h
    store.release(h)
    with pytest.raises(UnknownHandle):
        store.read(h)
    assert bytes(store.read(hb)) == b"tools" * 1000
    store.release(hb)
    s = stats(store)
    assert (s.chunks, s.handles, s.unique_bytes, s.hot.chunks) == (0, 0, 0, 0)
    assert store.check().ok


def test_release_frees_content_and_retires_segments(store: Store) -> None:
    a = store.register_agent("a")
    handles = [store.alloc_smu(SMUType.TOOL_RESULT, text(i, 300_000), a) for i in range(8)]
    assert stats(store).segments >= 2
    for h in handles:
        store.release(h)
    s = stats(store)
    assert s.chunks == 0 and s.unique_bytes == 0
    assert s.segments <= 1  # only the open segment may remain
    assert store.hot.retired_segments >= 1


def test_an_open_segment_left_empty_is_retired_after_a_second() -> None:
    """A pool's open segment stays when it empties (the next allocation reuses it) but not
    for as long as the store rests: a maintenance pass a second later retires it, views of
    what it held still read, and the next allocation opens a new one."""
    now = [0.0]
    with Store(clock=lambda: now[0]) as s:
        a = s.register_agent("a")
        kinds = (SMUType.SYSTEM_PROMPT, SMUType.TOOL_DEF, SMUType.TOOL_RESULT)
        handles = [s.alloc_smu(t, text(i, 3000), a) for i, t in enumerate(kinds)]
        kept = s.read(handles[0])
        before = bytes(kept)
        for h in handles:
            s.release(h)
        assert stats(s).segments == 2  # the shared and the private pool's open segments
        for t, retired in ((0.0, 0), (0.5, 0), (1.0, 2)):
            now[0] = t
            assert s.maintain()["segments_retired"] == retired
        assert stats(s).segments == 0 and stats(s).hot.physical_bytes == 0
        assert bytes(kept) == before
        # In use again before its second is up: it stays, and the clock starts over.
        h = s.alloc_smu(SMUType.TOOL_RESULT, b"again", a)
        now[0] = 2.0
        assert s.maintain()["segments_retired"] == 0
        s.release(h)
        now[0] = 2.5
        assert s.maintain()["segments_retired"] == 0
        h = s.alloc_smu(SMUType.TOOL_RESULT, b"and again", a)
        s.release(h)
        now[0] = 3.0
        assert s.maintain()["segments_retired"] == 0  # empty again, but only just seen so
        now[0] = 4.0
        assert s.maintain()["segments_retired"] == 1
        assert bytes(s.read(s.alloc_smu(SMUType.TOOL_RESULT, b"new", a))) == b"new"


def test_views_survive_release_and_store_close() -> None:
    s = Store()
    a = s.register_agent("a")
    h = s.alloc_smu(SMUType.BLOB, b"keep me", a)
    v = s.read(h)
    s.release(h)
    s.close()
    assert bytes(v) == b"keep me"


def test_demote_then_read_and_promote(store: Store) -> None:
    a = store.register_agent("a")
    data = text(3, 300_000)
    h = store.alloc_smu(SMUType.TOOL_RESULT, data, a)
    moved = store.demote(h)
    assert moved == len(data)
    s = stats(store)
    assert s.hot.chunks == 0 and s.warm.chunks > 0
    assert s.compression_ratio > 2
    assert bytes(store.read(h)) == data
    store.mark_hot(h)
    s = stats(store)
    assert s.warm.chunks == 0 and s.warm.containers == 0
    assert bytes(store.read(h)) == data
    assert store.check().ok


def test_pinned_content_is_not_demoted(store: Store) -> None:
    a, b = store.register_agent("a"), store.register_agent("b")
    data = text(4, 50_000)
    ha = store.alloc_smu(SMUType.SYSTEM_PROMPT, data, a)
    hb = store.alloc_smu(SMUType.SYSTEM_PROMPT, data, b)
    store.mark_hot(ha)
    assert store.demote(hb) == 0
    store.mark_hot(ha, hot=False)
    assert store.demote(hb) == len(data)
    assert bytes(store.read(ha)) == data


def test_conversation_append_fork_and_shared_history(store: Store) -> None:
    a, b = store.register_agent("a"), store.register_agent("b")
    msgs = [message(i) for i in range(30)]
    ca = store.alloc_smu(SMUType.CONVERSATION, msgs[:20], a)
    cb = store.alloc_smu(SMUType.CONVERSATION, msgs[:20], b)
    assert stats(store).messages == 20  # same history, same nodes
    store.append(ca, msgs[20])
    store.append(cb, msgs[21])
    assert stats(store).messages == 22
    fork = store.fork(ca)
    store.extend(fork, msgs[22:25])
    assert store.length(ca) == 21 and store.length(fork) == 24
    assert [bytes(m) for m in store.messages(fork)] == msgs[:21] + msgs[22:25]
    assert [bytes(m) for m in store.messages(ca, -2)] == [msgs[19], msgs[20]]
    assert store.size(fork) == sum(len(m) for m in msgs[:21] + msgs[22:25])
    store.release(ca)
    assert [bytes(m) for m in store.messages(fork, 20, 21)] == [msgs[20]]
    for h in (cb, fork):
        store.release(h)
    s = stats(store)
    assert s.messages == 0 and s.chunks == 0
    assert store.check().ok


def test_conversation_share_is_a_fork_for_the_target(store: Store) -> None:
    a, b = store.register_agent("a"), store.register_agent("b")
    c = store.alloc_smu(SMUType.CONVERSATION, [b"m1", b"m2"], a)
    cb = store.share_content(c, b)
    store.append(cb, b"m3")
    assert store.length(c) == 2 and store.length(cb) == 3
    agent_b = store.get_stats("b")
    assert agent_b.logical_bytes == 6  # type: ignore[union-attr]


def test_conversation_demote_compresses_groups(store: Store) -> None:
    a = store.register_agent("a")
    msgs = [message(i) for i in range(200)]
    c = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    store.demote(c)
    s = stats(store)
    assert s.hot.chunks == 0
    assert s.compression_ratio > 2.5
    assert [bytes(m) for m in store.messages(c)] == msgs
    assert store.check().ok


def test_stats_per_agent_unique_and_shared(store: Store) -> None:
    a, b = store.register_agent("a", importance=3), store.register_agent("b")
    shared = text(5, 10_000)
    store.alloc_smu(SMUType.SYSTEM_PROMPT, shared, a)
    store.alloc_smu(SMUType.SYSTEM_PROMPT, shared, b)
    mine = store.alloc_smu(SMUType.TOOL_RESULT, text(6, 3000), a)
    store.demote(mine)
    sa = store.get_stats(a)
    assert sa.name == "a" and sa.importance == 3  # type: ignore[union-attr]
    assert sa.shared_bytes == len(shared)  # type: ignore[union-attr]
    assert sa.unique_bytes == 3000  # type: ignore[union-attr]
    assert sa.compressed_bytes == 3000  # type: ignore[union-attr]
    assert sa.by_type == {"system_prompt": 10_000, "tool_result": 3000}  # type: ignore[union-attr]
    s = stats(store)
    assert [x.name for x in s.per_agent] == ["a", "b"]
    assert s.by_type["system_prompt"].handles == 2
    assert s.metadata_bytes > 0
    assert s.physical_bytes >= s.hot.physical_bytes


# --- bad input -----------------------------------------------------------------------------


def test_bad_input_raises_typed_errors_and_changes_nothing(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.SYSTEM_PROMPT, b"precious", a)
    before = stats(store)
    with pytest.raises(InvalidArgument, match="unknown SMU type"):
        store.alloc_smu("prompt", b"x", a)
    with pytest.raises(InvalidArgument):
        store.alloc_smu(SMUType.BLOB, 12345, a)
    with pytest.raises(InvalidArgument):
        store.alloc_smu(SMUType.BLOB, b"x", 3.5)  # type: ignore[arg-type]
    with pytest.raises(UnknownAgent):
        store.alloc_smu(SMUType.BLOB, b"x", "nobody")
    with pytest.raises(UnknownHandle):
        store.read(Handle(999))
    with pytest.raises(UnknownHandle):
        store.read("1")  # type: ignore[arg-type]
    with pytest.raises(WrongType):
        store.append(h, b"msg")
    with pytest.raises(WrongType):
        store.messages(h)
    c = store.alloc_smu(SMUType.CONVERSATION, [], a)
    with pytest.raises(WrongType):
        store.read(c)
    with pytest.raises(InvalidArgument):
        store.append(c, 42)
    with pytest.raises(InvalidArgument):
        store.alloc_smu(SMUType.CONVERSATION, b"not a list", a)
    with pytest.raises(InvalidArgument):
        store.messages(c, "0")  # type: ignore[arg-type]
    with pytest.raises(AgentExists):
        store.register_agent("a")
    with pytest.raises(InvalidArgument):
        store.register_agent("")
    with pytest.raises(InvalidArgument):
        store.set_state(a, "sleeping")
    store.release(c)
    store.release(h)
    with pytest.raises(UnknownHandle):
        store.release(h)
    with pytest.raises(UnknownHandle):
        store.share_content(h, a)
    after = stats(store)
    assert after.chunks == before.chunks - 1
    assert store.check().ok


def test_oversize_and_quotas() -> None:
    with Store(Config(max_smu_bytes=1000, agent_quota_bytes=1500, agent_quota_handles=3)) as s:
        a, b = s.register_agent("a"), s.register_agent("b")
        with pytest.raises(TooLarge):
            s.alloc_smu(SMUType.BLOB, b"x" * 1001, a)
        h = s.alloc_smu(SMUType.BLOB, b"x" * 1000, a)
        with pytest.raises(QuotaExceeded, match="bytes"):
            s.alloc_smu(SMUType.BLOB, b"y" * 600, a)
        s.share_content(h, b)
        with pytest.raises(QuotaExceeded, match="bytes"):
            s.share_content(h, b)  # b would hold 2000 bytes
        for i in range(2):
            s.alloc_smu(SMUType.BLOB, bytes([i]), b)
        with pytest.raises(QuotaExceeded, match="handles"):
            s.alloc_smu(SMUType.BLOB, b"z", b)  # a fourth handle
        assert s.check().ok


def test_domain_quota() -> None:
    with Store(Config(domain_quota_bytes=64 << 10)) as s:
        a = s.register_agent("a")
        s.alloc_smu(SMUType.BLOB, text(1, 30_000), a)
        with pytest.raises(QuotaExceeded):
            s.alloc_smu(SMUType.BLOB, text(2, 60_000), a)
        # a duplicate costs nothing physical and is accepted
        s.alloc_smu(SMUType.BLOB, text(1, 30_000), a)
        assert s.check().ok


def test_unregister_releases_everything(store: Store) -> None:
    a = store.register_agent("a", state="idle")
    assert a.state is AgentState.IDLE
    store.alloc_smu(SMUType.BLOB, b"one", a)
    store.alloc_smu(SMUType.CONVERSATION, [b"m"], a)
    assert store.unregister_agent(a) == 2
    s = stats(store)
    assert s.handles == 0 and s.chunks == 0 and s.agents == 0
    with pytest.raises(UnknownAgent):
        store.alloc_smu(SMUType.BLOB, b"x", a)


def test_closed_store_refuses(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.BLOB, b"x", a)
    store.close()
    with pytest.raises(StoreClosed):
        store.read(h)
    with pytest.raises(StoreClosed):
        store.alloc_smu(SMUType.BLOB, b"x", "a")


def test_check_reports_drift_and_corruption(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.TOOL_RESULT, text(7, 20_000), a)
    entry = next(iter(store.chunks.values()))
    entry.refs += 1  # a fault no public call can cause: simulate a refcount bug
    report = store.check()
    assert not report.ok and len(report.drift) == 1
    entry.refs -= 1
    store.demote(h)
    group = next(iter(store.chunks.values())).loc
    frame = bytearray(group.frame)  # type: ignore[union-attr]
    frame[-3] ^= 0xFF
    group.frame = bytes(frame)  # type: ignore[union-attr]
    store.warm._cache.clear()
    report = store.check()
    assert report.corrupt and not report.drift


def test_warm_tier_is_used_after_tier_change(store: Store) -> None:
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.SYSTEM_PROMPT, text(8, 40_000), a)
    assert store.chunks[next(iter(store.chunks))].tier is Tier.HOT
    store.demote(h)
    assert all(e.tier is Tier.WARM for e in store.chunks.values())


def test_dictionary_trains_from_frames_without_holding_copies() -> None:
    with Store(Config(dict_train_bytes=128 << 10, dict_size=8 << 10)) as s:
        a = s.register_agent("a")
        handles = [
            s.alloc_smu(SMUType.CONVERSATION, [message(i * 100 + j) for j in range(40)], a)
            for i in range(3)
        ]
        s.demote(handles[0])
        assert len(s.dictionaries) == 0
        assert s.dictionaries.memory_bytes == 0  # no copies of samples wait for training
        for h in handles[1:]:
            s.demote(h)
        assert len(s.dictionaries) == 1
        later = s.alloc_smu(SMUType.CONVERSATION, [message(1000 + j) for j in range(40)], a)
        s.demote(later)
        for i, h in enumerate([*handles, later]):
            base = 1000 if h == later else i * 100
            assert [bytes(m) for m in s.messages(h)] == [message(base + j) for j in range(40)]
        assert s.check().ok


def test_frames_kept_for_training_count_once_their_content_is_gone() -> None:
    """A frame made before its type's dictionary is kept as a training sample after its
    chunks are freed: its bytes are counted (dictionary_bytes, physical), not hidden, until
    training lets it go."""
    with Store(Config(dict_train_bytes=128 << 10, dict_size=8 << 10)) as s:
        a = s.register_agent("a")
        first = s.alloc_smu(SMUType.CONVERSATION, [message(j) for j in range(40)], a)
        s.demote(first)
        frames = s.warm.stats().stored_bytes
        assert frames > 0 and s.warm.training_bytes == 0  # still warm content
        s.release(first)
        stats = s.get_stats()
        assert s.warm.stats().stored_bytes == 0 and s.warm.training_bytes == frames
        assert stats.dictionary_bytes == frames and stats.physical_bytes >= frames
        for i in range(1, 4):  # past dict_train_bytes: trained, the samples go
            s.demote(
                s.alloc_smu(SMUType.CONVERSATION, [message(i * 100 + j) for j in range(40)], a)
            )
        assert len(s.dictionaries) == 1
        assert s.warm.training_bytes == 0
        assert s.get_stats().dictionary_bytes == s.dictionaries.memory_bytes


def test_compaction_reclaims_sparse_segments_and_keeps_views(store: Store) -> None:
    a = store.register_agent("a")
    # 1 MiB segments (fixture); many 3 KiB items so each segment holds ~340 of them.
    items = [text(i, 3000) for i in range(1200)]
    handles = [store.alloc_smu(SMUType.TOOL_RESULT, d, a) for d in items]
    held = store.read(handles[1])
    before = stats(store)
    for h in handles[::4] + handles[1::4] + handles[2::4]:
        store.release(h)  # three quarters freed: every segment is now sparse
    reclaimed = store.compact()
    after = stats(store)
    assert reclaimed > 0
    assert after.segments < before.segments
    assert after.hot.stored_bytes < before.hot.stored_bytes / 2
    for i in range(3, 1200, 4):
        assert bytes(store.read(handles[i])) == items[i]
    assert bytes(held) == items[1]  # a view taken before compaction still reads its bytes
    assert store.check().ok


def test_published_content_is_opened_by_name_and_outlives_its_allocator(store: Store) -> None:
    orchestrator = store.register_agent("orchestrator")
    prompt = text(9, 60_000)
    h = store.alloc_smu(SMUType.SYSTEM_PROMPT, prompt, orchestrator)
    store.publish(h, "coder/system-prompt")
    store.publish(h, "coder/system-prompt")  # idempotent for the same content
    store.release(h)
    worker = store.register_agent("worker-1")
    opened = store.open("coder/system-prompt", worker)
    assert bytes(store.read(opened)) == prompt
    other = store.alloc_smu(SMUType.SYSTEM_PROMPT, b"other", orchestrator)
    with pytest.raises(InvalidArgument, match="published already"):
        store.publish(other, "coder/system-prompt")
    conv = store.alloc_smu(SMUType.CONVERSATION, [], worker)
    with pytest.raises(WrongType):
        store.publish(conv, "a conversation")
    with pytest.raises(UnknownHandle):
        store.open("never/published", worker)
    assert store.check().ok
    store.unpublish("coder/system-prompt")
    with pytest.raises(UnknownHandle):
        store.open("coder/system-prompt", worker)
    assert bytes(store.read(opened)) == prompt  # opened handles live on
    store.release(opened)
    assert stats(store).unique_bytes == 5  # only "other" is left
    assert store.check().ok


def test_slices_are_views_of_their_buffer_made_when_read() -> None:
    from agentmem.store.store import Slices

    data = bytes(range(200))
    pieces = Slices(memoryview(data))
    for start, end in [(0, 10), (10, 15), (40, 200)]:
        pieces.add(start, end)
    assert len(pieces) == 3
    assert [bytes(p) for p in pieces] == [data[:10], data[10:15], data[40:]]
    assert [bytes(p) for p in pieces.only([2, 0])] == [data[40:], data[:10]]
    assert data[10:15] in pieces and b"absent" not in pieces
    assert all(p.obj is data for p in pieces)  # views, not copies
