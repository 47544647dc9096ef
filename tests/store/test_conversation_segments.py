"""Conversation segments: a handle's messages in segments only it may map, read as extents."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store import Store, layout
from agentmem.store.hot import OWN_AFTER_BYTES, OWNED_FIRST_BYTES
from agentmem.store.layout import MessageExtents
from agentmem.store.records import ConversationRef
from agentmem.store.segments import PAGE, Segment
from tests.conftest import message, step_through, text

CFG = Config(dict_train_bytes=64 << 10, dict_size=16 << 10, segment_bytes=1 << 20)


def new_store(own_after: int = 0, **kw: int) -> Store:
    """A store whose conversations get segments of their own from their first byte (0)."""
    store = Store(dataclasses.replace(CFG, **kw), far_memory=None)
    store.hot.own_after_bytes = own_after
    return store


def resolve(me: MessageExtents) -> list[bytes]:
    """The messages the pieces stand for, split by ``sizes``."""
    joined = b"".join(
        bytes(p[0].view(p[1], p[2])) if isinstance(p, tuple) else bytes(p) for p in me.pieces
    )
    assert len(joined) == sum(me.sizes)
    out, at = [], 0
    for n in me.sizes:
        out.append(joined[at : at + n])
        at += n
    return out


def texts(store: Store, h: Handle, start: int = 0, stop: int | None = None) -> list[bytes]:
    return [bytes(m) for m in store.messages(h, start, stop)]


def extents(me: MessageExtents) -> list[tuple[Segment, int, int]]:
    return [p for p in me.pieces if isinstance(p, tuple)]


def ref(store: Store, h: Handle) -> ConversationRef:
    r = store.refs[h]
    assert isinstance(r, ConversationRef)
    return r


def test_a_handles_messages_come_back_as_extents_of_its_own_segments() -> None:
    store = new_store(own_after=OWN_AFTER_BYTES)
    a = store.register_agent("a")
    msgs = [message(i) for i in range(300)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs[:100], a)
    store.extend(h, msgs[100:])
    me = store.message_extents(h)
    assert me.sizes == [len(m) for m in msgs]
    assert resolve(me) == msgs == texts(store, h)
    # The first 16 KiB of the conversation are copies, the rest extents of its own segments.
    head = held = 0
    while held < OWN_AFTER_BYTES:
        held += len(msgs[head])
        head += 1
    assert all(isinstance(p, memoryview) for p in me.pieces[:head])
    own = extents(me)
    assert sum(n for _, _, n in own) == sum(len(m) for m in msgs[head:])
    mine = store.hot.owned_segments(h)
    # Consecutive messages are one extent: one per segment of the conversation.
    assert len(own) == len(mine) and [s for s, _, _ in own] == mine
    assert all(seg.owner == h and seg.pool == "owned" and store.may_map(h, seg) for seg in mine)
    # Segments start small and double.
    assert mine[0].capacity == OWNED_FIRST_BYTES
    assert [s.capacity for s in mine[1:]] == [
        min(OWNED_FIRST_BYTES << (i + 1), CFG.segment_bytes) for i in range(len(mine) - 1)
    ]
    # Slices, as messages() takes them.
    for start, stop in ((0, 1), (150, 160), (-5, None), (10, 3)):
        assert resolve(store.message_extents(h, start, stop)) == texts(store, h, start, stop)
    assert store.check().ok


def test_large_and_partly_deduplicated_messages_are_extents_too() -> None:
    store = new_store()
    a = store.register_agent("a")
    big = text(1, 400_000)  # over a quarter of a 1 MiB segment: a segment sized to fit
    body = text(2, 30_000)
    msgs = [message(0), big, body, body[:20_000] + text(3, 9_000), message(1)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    me = store.message_extents(h)
    assert resolve(me) == msgs
    assert all(isinstance(p, tuple) for p in me.pieces)  # every chunk is in its own segments
    assert all(store.may_map(h, seg) for seg, _, _ in extents(me))
    assert any(seg.capacity >= len(big) for seg in store.hot.owned_segments(h))


def test_a_forks_prefix_is_bytes_and_its_own_appends_its_own_extents() -> None:
    store = new_store()
    a = store.register_agent("a")
    b = store.register_agent("b")
    prefix = [message(i) for i in range(50)]
    h = store.alloc_smu(SMUType.CONVERSATION, prefix, a)
    f = store.fork(h)  # same agent
    g = store.share_content(h, b)  # another agent
    store.extend(h, [message(100 + i) for i in range(20)])
    store.extend(f, [message(200 + i) for i in range(20)])
    store.extend(g, [message(300 + i) for i in range(20)])
    for handle in (f, g):
        me = store.message_extents(handle)
        assert resolve(me) == texts(store, handle)
        assert all(isinstance(p, memoryview) for p in me.pieces[:50])  # the shared prefix
        own = extents(me)
        assert sum(n for _, _, n in own) == sum(me.sizes[50:])
        assert {seg.owner for seg, _, _ in own} == {handle}
    me = store.message_extents(h)
    assert resolve(me) == texts(store, h)
    assert all(isinstance(p, tuple) for p in me.pieces)  # the first owner keeps its prefix
    # The same history appended again by another handle: deduplicated, so it stays put.
    again = store.alloc_smu(SMUType.CONVERSATION, prefix, b)
    assert store.hot.owned_segments(again) == []
    assert all(isinstance(p, memoryview) for p in store.message_extents(again).pieces)
    assert store.check().ok


def test_no_other_handle_may_map_an_owned_segment() -> None:
    store = new_store()
    a = store.register_agent("a")
    b = store.register_agent("b")
    h = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(40)], a)
    f = store.fork(h)
    store.extend(f, [message(100 + i) for i in range(40)])
    other = store.alloc_smu(SMUType.CONVERSATION, [message(200 + i) for i in range(40)], b)
    # Content that deduplicates against a message: an SMU whose extents lie in h's segment.
    tool = store.alloc_smu(SMUType.TOOL_RESULT, message(3), b)
    prompt = store.alloc_smu(SMUType.SYSTEM_PROMPT, text(7, 100_000), b)
    blob = store.alloc_smu(SMUType.BLOB, text(8, 100_000), b)  # exclusive: alone in a segment
    small = store.alloc_smu(SMUType.TOOL_RESULT, b"a private tool result", b)
    seg_of_tool = store.extents(tool)[0][0]
    assert seg_of_tool.owner == h
    handles = [h, f, other, tool, prompt, blob, small, Handle(12345)]
    owned = [seg for seg in store.hot if seg.owner]
    assert {seg.owner for seg in owned} == {h, f, other}
    for seg in owned:
        assert [x for x in handles if store.may_map(x, seg)] == [seg.owner]
    for x in (h, f, other):
        assert {seg.owner for seg, _, _ in extents(store.message_extents(x))} == {x}
    # Other pools, as the daemon decides for SMU reads today.
    ((pseg, _, _),) = store.extents(prompt)
    ((bseg, _, _),) = store.extents(blob)
    assert store.may_map(h, pseg) and store.may_map(tool, pseg)
    assert store.may_map(blob, bseg) and not store.may_map(prompt, bseg)
    private = store.hot._open["private"]
    assert private is not None and not any(store.may_map(x, private) for x in handles)
    assert not store.may_map(h, Segment(-1, PAGE))  # not one of the store's


def test_demoted_messages_are_promoted_counted_and_read_as_before() -> None:
    counts = []
    for api in ("messages", "message_extents"):
        store = new_store()
        a = store.register_agent("a")
        msgs = [message(i) for i in range(120)]
        h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
        assert store.demote(h) == sum(len(m) for m in msgs)
        assert all(e.tier is Tier.WARM for n in ref(store, h).path for e in n.chunks)
        before = store.promotions[AgentState.ACTIVE], store.promoted_bytes[AgentState.ACTIVE]
        if api == "messages":
            assert texts(store, h) == msgs
        else:
            me = store.message_extents(h)
            assert resolve(me) == msgs
            # Promoted into its reader's own segment: extents from now on.
            assert all(isinstance(p, tuple) and p[0].owner == h for p in me.pieces)
        after = store.promotions[AgentState.ACTIVE], store.promoted_bytes[AgentState.ACTIVE]
        counts.append((after[0] - before[0], after[1] - before[1]))
        assert store.check().ok
        store.close()
    assert counts[0] == counts[1] == (1, sum(len(message(i)) for i in range(120)))


def test_demoted_messages_that_do_not_fit_come_back_as_bytes() -> None:
    budget = 64 << 10
    store = new_store(hot_budget_bytes=budget)
    a = store.register_agent("a")
    msgs = [message(i) for i in range(200)]  # ~340 KB: most of it demoted as it is written
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    me = store.message_extents(h)
    assert resolve(me) == msgs
    assert store.hot.live_bytes <= budget
    assert any(isinstance(p, memoryview) for p in me.pieces)  # served decoded
    assert all(store.may_map(h, seg) for seg, _, _ in extents(me))


def _sparse_owners(n: int) -> tuple[Store, list[tuple[Handle, int]]]:
    """A store of ``n`` conversations of 200 messages, each with 3/4 of its second segment
    demoted (holes); each handle with the first message it kept hot, there."""
    store = new_store()
    a = store.register_agent("a")
    out = []
    for c in range(n):
        h = store.alloc_smu(SMUType.CONVERSATION, [message(1000 * c + i) for i in range(200)], a)
        second = store.hot.owned_segments(h)[1]
        idx = [i for i, n in enumerate(ref(store, h).path) if n.chunks[0].loc is second]
        cut = idx[0] + 3 * len(idx) // 4
        store.demote(h, keep=200 - cut)
        out.append((h, cut))
    return store, out


def test_compaction_keeps_each_owners_chunks_in_its_own_segments() -> None:
    store, cuts = _sparse_owners(2)
    hs = [h for h, _ in cuts]
    # in the sparse segment: it moves
    held = [(cut, store.messages(h, cut)[0]) for h, cut in cuts]
    before = {h: texts(store, h) for h in hs}
    assert store.compact() > 0
    for h, (cut, view) in zip(hs, held, strict=True):
        assert texts(store, h) == before[h]
        assert bytes(view) == before[h][cut]  # a view taken before compaction still reads
        for node in ref(store, h).path:
            loc = node.chunks[0].loc
            if isinstance(loc, Segment):
                assert loc.owner == h and store.may_map(h, loc)
        me = store.message_extents(h)
        assert resolve(me) == before[h]
    assert not [seg for seg in store.hot if seg.pool == "private" and seg.used]
    assert store.check().ok


def test_a_released_owners_segments_are_mappable_by_no_one() -> None:
    store = new_store()
    a = store.register_agent("a")
    h = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(80)], a)
    f = store.fork(h)
    store.append(h, message(500))
    mine = store.hot.owned_segments(h)
    store.release(h)
    assert store.hot.owned_segments(h) == []
    live = [seg for seg in mine if seg.seg_id in store.hot.segments]
    assert live  # the fork still holds the prefix there
    later = store.alloc_smu(SMUType.CONVERSATION, [message(600 + i) for i in range(30)], a)
    for seg in live:
        assert seg.owner == 0 and seg.pool == "private"
        assert not any(store.may_map(x, seg) for x in (h, f, later))
    assert texts(store, f) == [message(i) for i in range(80)]
    assert all(isinstance(p, memoryview) for p in store.message_extents(f).pieces)
    # Compaction treats them as private segments now.
    store.demote(f, keep=5)
    assert store.compact(max_live_ratio=1.0) > 0
    recent = {id(n.chunks[0].loc) for n in ref(store, f).path[-5:]}
    assert not any(seg.owner for seg in store.hot if id(seg) in recent)
    # f's read promotes what was demoted into f's own segment: that one f may map.
    assert texts(store, f) == [message(i) for i in range(80)]
    for node in ref(store, f).path:
        loc = node.chunks[0].loc
        assert isinstance(loc, Segment)
        assert [x for x in (h, f, later) if store.may_map(x, loc)] == ([f] if loc.owner else [])
    assert store.check().ok


def test_many_small_conversations_do_not_inflate_physical_bytes() -> None:
    store = new_store(own_after=OWN_AFTER_BYTES)
    a = store.register_agent("a")
    for i in range(1000):
        store.alloc_smu(SMUType.CONVERSATION, [b"hello %d" % i, message(i)[:200]], a)
    hot = store.hot.stats()
    # No segment per conversation: they share private segments, as before.
    assert hot.containers <= 2
    assert hot.physical_bytes <= hot.raw_bytes + 2 * PAGE
    # Past the threshold each gets a segment of its own: 64 KiB reserved, pages as written.
    hs = [
        store.alloc_smu(SMUType.CONVERSATION, [text(10_000 + c, 17_000), message(c)], a)
        for c in range(100)
    ]
    hot = store.hot.stats()
    assert all([s.capacity for s in store.hot.owned_segments(h)] == [OWNED_FIRST_BYTES] for h in hs)
    assert hot.containers <= 100 + 3
    assert hot.physical_bytes <= hot.raw_bytes + 100 * PAGE + 3 * PAGE
    # And physical bytes are the truth: the pages the memfds hold.
    assert hot.physical_bytes == sum(seg.resident_bytes() for seg in store.hot)


def test_restored_conversations_are_placed_in_their_own_segments(tmp_path: pathlib.Path) -> None:
    store = Store(CFG, state_dir=str(tmp_path), far_memory=None)
    a = store.register_agent("alice")
    conv = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(60)], a)
    fork = store.fork(conv)
    store.extend(fork, [message(100 + i) for i in range(20)])
    store.extend(conv, [message(200 + i) for i in range(20)])
    want = {h: texts(store, h) for h in (conv, fork)}
    store.sync()
    store.close()

    again = Store(CFG, state_dir=str(tmp_path), far_memory=None)
    assert again.restored.conversations == 2 and again.restored.problems == []
    for h in (conv, fork):
        me = again.message_extents(h)
        assert resolve(me) == want[h] == texts(again, h)
        assert {seg.owner for seg, _, _ in extents(me)} == {h}
        assert all(again.may_map(h, seg) for seg, _, _ in extents(me))
    own_bytes = sum(n for _, _, n in extents(again.message_extents(fork)))
    assert own_bytes == sum(len(message(100 + i)) for i in range(20))
    assert again.check().ok
    again.close()


def test_a_conversation_demoted_whole_leaves_no_open_segment_behind() -> None:
    store = new_store()
    a, b = store.register_agent("a"), store.register_agent("b")
    common = message(9_999)  # a message both conversations hold: it stays hot for b
    ha = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(40)] + [common], a)
    hb = store.alloc_smu(SMUType.CONVERSATION, [message(500), common], b)
    (seg,) = store.hot.owned_segments(ha)
    assert store.hot.is_open(seg)
    assert store.demote(ha, own_only=True) > 0
    assert not store.hot.is_open(seg)  # closed: compaction may take it
    assert seg.live_bytes == len(common)
    assert store.compact() > 0
    assert seg.seg_id not in store.hot.segments  # its last live chunk moved, it is retired
    assert texts(store, ha) == [message(i) for i in range(40)] + [common]  # promoted back
    assert texts(store, hb) == [message(500), common]
    store.close()


def test_an_empty_message_keeps_its_segment_alive() -> None:
    # A 0-byte chunk counts no bytes, but it is live: its segment must not be retired under it.
    import random

    rng = random.Random(5)
    store = new_store(own_after=OWN_AFTER_BYTES)
    a, b = store.register_agent("a"), store.register_agent("b")
    big = [rng.randbytes(1500) for _ in range(12)]
    ha = store.alloc_smu(SMUType.CONVERSATION, [*big, b"", b"x" * 500], a)
    hb = store.alloc_smu(SMUType.CONVERSATION, [b"hi", b""], b)  # its b"" is a's chunk
    assert store.demote(ha, own_only=True) > 0  # closes a's open segment
    assert texts(store, hb) == [b"hi", b""]
    assert texts(store, ha) == [*big, b"", b"x" * 500]
    # one conversation: an empty message alone in a segment, then one too large for it
    hc = store.alloc_smu(SMUType.CONVERSATION, [rng.randbytes(1500) for _ in range(11)], a)
    store.extend(hc, [b"", rng.randbytes(100_000)])
    assert [len(m) for m in texts(store, hc)][-2:] == [0, 100_000]
    me = store.message_extents(hc)
    assert [len(m) for m in resolve(me)][-2:] == [0, 100_000]
    assert store.check().ok
    store.close()


def test_compaction_in_steps_moves_what_is_still_there_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(layout, "SCAN_STEP", 64)  # many steps even for a small index
    store, cuts = _sparse_owners(5)
    hs = [h for h, _ in cuts]
    # in the sparse segments: they move
    held = [(cut, store.messages(h, cut)[0]) for h, cut in cuts]
    expected = {h: texts(store, h) for h in hs}
    gone, down, grows, forked, kept = hs
    running = store.compact_steps()
    assert running is not None
    fork: list[Handle] = []

    def fork_and_release() -> None:
        fork.append(store.fork(forked))
        store.release(forked)  # its segments join the private pool: not moved as its own

    changes = [
        lambda: store.release(gone),  # freed: nothing of it moves
        lambda: store.demote(down),  # left the sparse segment: stays where it went
        lambda: store.append(grows, message(9999)),
        fork_and_release,
        store.check,
    ]
    reclaimed, taken, _ = step_through(running, changes)
    assert taken > len(store.chunks) // 64  # the scan went a step at a time
    assert reclaimed > 0
    expected[grows].append(message(9999))
    assert texts(store, grows) == expected[grows]
    assert texts(store, down) == expected[down]
    assert texts(store, fork[0]) == expected[forked]
    assert texts(store, kept) == expected[kept]
    for h, (cut, view) in zip(hs, held, strict=True):
        assert bytes(view) == expected[h][cut]  # views taken before still read their bytes
    for h in (grows, kept):
        for node in ref(store, h).path:
            loc = node.chunks[0].loc
            if isinstance(loc, Segment):
                assert loc.owner == h and store.may_map(h, loc)
        assert resolve(store.message_extents(h)) == expected[h]
    assert not store.hot.owned_segments(gone) and not store.hot.owned_segments(forked)
    assert store.check().ok


def test_compact_finishes_a_compaction_in_steps_in_progress() -> None:
    store, [(h, _)] = _sparse_owners(1)
    store.compaction = store.compact_steps()
    assert store.compaction is not None
    next(store.compaction)
    assert store.compact() > 0
    assert store.compaction is None
    assert store.compact_steps() is None  # nothing sparse is left
    assert texts(store, h) == [message(i) for i in range(200)]
    assert store.check().ok


def test_a_handle_released_at_any_step_of_a_compaction_gets_no_segment_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(layout, "SCAN_STEP", 256)
    total = None
    when = 0
    while total is None or when <= total:
        store, [_, (h, _), _] = _sparse_owners(3)
        expected = texts(store, h)
        fork: list[Handle] = []

        def fork_and_release(
            h: Handle = h, store: Store = store, fork: list[Handle] = fork
        ) -> None:
            fork.append(store.fork(h))
            store.release(h)  # its segments are no one's now: never moved back into its own

        running = store.compact_steps()
        assert running is not None
        _, taken, _ = step_through(running, [lambda: None] * when + [fork_and_release])
        total = taken if total is None else total
        if fork:
            assert not store.hot.owned_segments(h), when
            assert texts(store, fork[0]) == expected
        assert store.check().ok
        store.close()
        when += 1
