"""The once-a-second age pass costs what came due, not what is held."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import pytest

from agentmem.codec.frame import read_header
from agentmem.config import Config
from agentmem.errors import DiskFull
from agentmem.states import SMUType, Tier
from agentmem.store import Store
from agentmem.store import store as store_module
from agentmem.store.tiering import demote_cold, demote_idle
from tests.conftest import message


def _listed(store: Store) -> list[Any]:
    """Spy on ``store.candidates``: each call's ``refs`` argument lands in the list returned."""
    calls: list[Any] = []
    real = store.candidates

    def spy(tier: Tier = Tier.HOT, refs: Any = None) -> Any:
        calls.append(None if refs is None else [r.handle for r in refs])
        return real(tier, refs)

    store.candidates = spy  # type: ignore[method-assign]
    return calls


def _tiers(store: Store, h: int) -> set[Tier]:
    return {e.tier for n in store.refs[h].path for e in n.chunks}  # type: ignore[union-attr]


def test_a_conversation_taken_down_is_not_listed_again_until_it_is_used() -> None:
    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0], far_memory=None)
    idle = store.register_agent("idle", state="idle")
    busy = store.register_agent("busy")
    conv = [message(i) for i in range(30)]
    a = store.alloc_smu(SMUType.CONVERSATION, conv, idle)
    b = store.alloc_smu(SMUType.CONVERSATION, [message(100 + i) for i in range(30)], busy)
    calls = _listed(store)
    now[0] = 61.0
    assert demote_idle(store) == sum(len(m) for m in conv)
    assert calls[-1] == [a]  # only the due handle was listed, not the active agent's
    assert _tiers(store, a) == {Tier.WARM} and _tiers(store, b) == {Tier.HOT}

    now[0] = 62.0
    listed = len(calls)
    assert demote_idle(store) == 0
    assert all(c == [] for c in calls[listed:])  # nothing new came due: none walked

    assert len(store.messages(a, 0, None)) == 30  # a read: used again, promoted
    assert _tiers(store, a) == {Tier.HOT}
    now[0] = 100.0
    assert demote_idle(store) == 0  # used 38 s ago: not due yet
    now[0] = 130.0
    assert demote_idle(store) == sum(len(m) for m in conv)  # due again, taken down again
    assert calls[-1] == [a]
    assert _tiers(store, a) == {Tier.WARM}
    store.close()


def test_a_shared_prompt_is_left_to_the_budget_without_being_walked() -> None:
    now = [0.0]
    store = Store(Config(warm_after_seconds=300), clock=lambda: now[0], far_memory=None)
    agents = [store.register_agent(f"a{i}", state="idle") for i in range(3)]
    prompt = bytes(range(256)) * 400
    hs = [store.alloc_smu(SMUType.SYSTEM_PROMPT, prompt, a) for a in agents]
    calls = _listed(store)
    now[0] = 400.0
    assert demote_idle(store) == 0
    assert all(c == [] for c in calls)  # held three times: not even listed
    assert {e.tier for e in store.refs[hs[0]].smu.chunks} == {Tier.HOT}  # type: ignore[union-attr]
    store.close()


def test_the_cold_age_lists_only_handles_old_enough(tmp_path: pathlib.Path) -> None:
    now = [0.0]
    cfg = Config(warm_after_seconds=300, cold_after_seconds=1000)
    store = Store(cfg, clock=lambda: now[0], far_memory=None, state_dir=str(tmp_path))
    a = store.register_agent("a")
    old = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(10)], a)
    now[0] = 400.0
    recent = store.alloc_smu(SMUType.CONVERSATION, [message(50 + i) for i in range(10)], a)
    assert demote_idle(store) > 0
    calls = _listed(store)
    now[0] = 900.0
    assert demote_cold(store) == 0
    assert calls == []  # none old enough: nothing walked
    now[0] = 1200.0  # ``old`` unused for 1200 s, ``recent`` for 800 s
    assert demote_cold(store) > 0
    assert calls[-1] == [old]
    assert _tiers(store, old) == {Tier.COLD}
    assert _tiers(store, recent) == {Tier.HOT}
    store.close()


def test_a_release_lets_the_age_pass_take_what_became_one_handles_own() -> None:
    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0], far_memory=None)
    idle = store.register_agent("idle", state="idle")
    busy = store.register_agent("busy")
    conv = [message(i) for i in range(30)]
    a = store.alloc_smu(SMUType.CONVERSATION, conv, idle)
    shared = store.share_content(a, busy)  # the busy agent holds the same history
    now[0] = 61.0
    demote_idle(store)
    assert Tier.HOT in _tiers(store, a)  # held by an active agent too: it stays
    store.release(shared)
    now[0] = 62.0
    assert demote_idle(store) == sum(len(m) for m in conv)  # now a's alone: it goes
    assert _tiers(store, a) == {Tier.WARM}
    store.close()


def test_chunks_several_conversations_hold_go_once_every_holder_is_due() -> None:
    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0], far_memory=None)
    agents = [store.register_agent(f"a{i}") for i in range(3)]
    common = [message(1000 + i) for i in range(20)]  # the same messages in every history
    hs = [
        store.alloc_smu(SMUType.CONVERSATION, [message(10 * k), *common, message(10 * k + 1)], a)
        for k, a in enumerate(agents)
    ]
    entries = {id(e): e for n in store.refs[hs[0]].path[1:21] for e in n.chunks}  # type: ignore[union-attr]
    assert all(e.refs == 3 for e in entries.values())  # one chunk each, three claims
    store.set_state(agents[0], "idle")
    store.set_state(agents[1], "idle")
    now[0] = 61.0
    demote_idle(store)  # two of three holders idle: the common chunks stay hot
    assert {e.tier for e in entries.values()} == {Tier.HOT}
    assert _tiers(store, hs[0]) == {Tier.WARM, Tier.HOT}  # their own messages went
    store.set_state(agents[2], "idle")
    now[0] = 122.0
    common_bytes = sum(len(m) for m in common)
    own = len(message(20)) + len(message(21))
    assert demote_idle(store) == own + common_bytes  # the last holder due: they go too
    assert {e.tier for e in entries.values()} == {Tier.WARM}
    assert all(_tiers(store, h) == {Tier.WARM} for h in hs)
    assert len(store.messages(hs[1], 0, None)) == 22  # read back: promoted, intact
    assert store.check().ok
    store.close()


def test_a_shared_chunk_stays_while_other_content_holds_it() -> None:
    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0], far_memory=None)
    idle = [store.register_agent(f"i{i}", state="idle") for i in range(2)]
    busy = store.register_agent("busy")
    common = message(777)
    hs = [
        store.alloc_smu(SMUType.CONVERSATION, [message(k), common], a) for k, a in enumerate(idle)
    ]
    held = store.share_content(hs[0], busy)  # the busy agent holds idle[0]'s history
    store.alloc_smu(SMUType.TOOL_DEF, common, busy)  # and holds the same bytes as an SMU
    now[0] = 61.0
    demote_idle(store)
    tip = store.refs[hs[1]].path[-1]  # type: ignore[union-attr]
    assert {e.tier for e in tip.chunks} == {Tier.HOT}  # the fork and the SMU still hold it
    assert Tier.HOT in _tiers(store, held)
    store.close()


def test_with_the_warm_tier_at_its_budget_due_content_goes_straight_to_cold(
    tmp_path: pathlib.Path,
) -> None:
    now = [0.0]
    cfg = Config(idle_agent_warm_seconds=60, warm_budget_bytes=20_000)
    store = Store(cfg, clock=lambda: now[0], far_memory=None, state_dir=str(tmp_path))
    first = store.register_agent("first", state="idle")
    a = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(200)], first)
    now[0] = 61.0
    demote_idle(store)  # the warm tier has room: a goes warm
    assert _tiers(store, a) == {Tier.WARM}
    assert store.warm.frame_bytes >= 20_000  # and fills it
    later = store.register_agent("later", state="idle")
    b = store.alloc_smu(SMUType.CONVERSATION, [message(500 + i) for i in range(200)], later)
    now[0] = 122.0
    warm_before = store.warm.frame_bytes
    demote_idle(store)
    assert _tiers(store, b) == {Tier.COLD}  # not through the warm tier
    assert store.warm.frame_bytes == warm_before
    assert [bytes(m) for m in store.messages(b, 0, 2)] == [message(500), message(501)]
    assert store.check().ok
    store.close()


def test_warm_pressure_goes_an_eighth_below_the_budget(tmp_path: pathlib.Path) -> None:
    now = [0.0]
    budget = 60_000
    cfg = Config(warm_budget_bytes=budget)
    store = Store(cfg, clock=lambda: now[0], far_memory=None, state_dir=str(tmp_path))
    agent = store.register_agent("a")
    sizes = []
    for k in range(60):  # small conversations: the pass could stop just under the budget
        h = store.alloc_smu(SMUType.CONVERSATION, [message(100 * k + i) for i in range(6)], agent)
        before = store.warm.frame_bytes
        store.demote(h)
        sizes.append(store.warm.frame_bytes - before)
    assert store.warm.frame_bytes > budget and max(sizes) < budget // 16
    assert demote_cold(store) > 0
    assert store.warm.frame_bytes <= budget - budget // 8
    store.close()


def test_a_pass_with_a_deadline_takes_the_oldest_due_first_and_leaves_the_rest() -> None:
    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0], far_memory=None)
    agents = [store.register_agent(f"idle-{i}", state="idle") for i in range(3)]
    handles = []
    for i, agent in enumerate(reversed(agents)):  # the last agent's handle is used first
        now[0] = float(i)
        handles.append(store.alloc_smu(SMUType.CONVERSATION, [message(100 * i)] * 3, agent))
    calls = _listed(store)
    now[0] = 100.0
    passed = -1.0  # a deadline already passed: one handle a pass
    moved = []
    while True:
        moved.append(demote_idle(store, deadline=passed))
        if not store.idle_backlog:
            break
    assert len(moved) == 3 and all(moved)
    assert calls == [[h] for h in handles]  # oldest first, each listed alone, once
    assert all(_tiers(store, h) == {Tier.WARM} for h in handles)
    assert demote_idle(store, deadline=passed) == 0 and not store.idle_backlog


def test_a_long_history_goes_down_a_warm_group_a_pass_from_where_the_last_stopped() -> None:
    """A pass whose deadline has passed still takes one step, a warm group's bytes: a long
    history goes down over several passes (the loop answers requests between them), listed
    once, and a history used part-way is listed afresh when it is due again."""
    now = [0.0]
    group = 16 << 10
    cfg = Config(idle_agent_warm_seconds=60, warm_group_bytes=group)
    store = Store(cfg, clock=lambda: now[0], far_memory=None)
    idle = store.register_agent("idle", state="idle")
    conv = [message(i) for i in range(120)]  # ~200 KB: a dozen groups
    a = store.alloc_smu(SMUType.CONVERSATION, conv, idle)
    total = sum(len(m) for m in conv)
    calls = _listed(store)
    now[0] = 61.0
    passed = time.monotonic() - 1.0  # every pass is past its deadline: one step each
    moves = [demote_idle(store, passed)]
    assert store.idle_backlog and _tiers(store, a) == {Tier.WARM, Tier.HOT}  # part-way
    while store.idle_backlog:
        moves.append(demote_idle(store, passed))
    assert len(moves) > 5 and sum(moves) == total
    assert max(moves) < group + max(len(m) for m in conv)  # one group a pass
    assert calls.count([a]) == 1  # listed once, not once a pass
    assert _tiers(store, a) == {Tier.WARM} and not store.demoting
    assert [bytes(m) for m in store.messages(a, 0, None)] == conv  # read back: intact
    # Used part-way down: what was left is dropped and listed afresh when due again.
    now[0] = 200.0
    demote_idle(store, passed)
    assert store.idle_backlog and a in store.demoting
    store.messages(a, 0, 1)  # used again
    demote_idle(store, passed)  # not due now: the demotion in progress is dropped
    assert not store.demoting and not store.idle_backlog
    now[0] = 300.0
    while demote_idle(store, passed) and store.idle_backlog:
        pass
    assert calls.count([a]) == 3 and _tiers(store, a) == {Tier.WARM}
    assert store.check().ok
    store.close()


def test_a_demoted_history_comes_back_in_steps_contiguous_and_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "PROMOTE_STEP_BYTES", 16 << 10)
    cfg = Config(warm_group_bytes=16 << 10)
    store = Store(cfg, far_memory=None)
    a = store.register_agent("a")
    conv = [message(i) for i in range(120)]  # ~200 KB: a dozen groups
    h = store.alloc_smu(SMUType.CONVERSATION, conv, a)
    assert store.promotion_steps(h) is None  # all hot: nothing to do
    one_shot = len(store.message_extents(h).pieces)
    store.demote(h)
    steps = store.promotion_steps(h)
    assert steps is not None
    before = list(store.promotions)
    taken = 0
    for _ in steps:
        taken += 1
        assert store.promotions == before  # counted once, at the end
    assert taken > 5
    assert sum(store.promotions) == sum(before) + 1
    assert _tiers(store, h) == {Tier.HOT} and store.promotion_steps(h) is None
    got = store.message_extents(h)
    assert len(got.pieces) <= one_shot + 1  # still a few extents: placed in order
    assert [bytes(m) for m in store.messages(h)] == conv
    # With a hot budget a promotion is all or nothing: one step.
    budgeted = Store(Config(warm_group_bytes=16 << 10, hot_budget_bytes=64 << 20), far_memory=None)
    b = budgeted.register_agent("b")
    hb = budgeted.alloc_smu(SMUType.CONVERSATION, conv, b)
    budgeted.demote(hb)
    steps = budgeted.promotion_steps(hb)
    assert steps is not None and list(steps) == []
    assert _tiers(budgeted, hb) == {Tier.HOT}
    store.close()
    budgeted.close()


def test_a_demotion_that_fails_part_way_is_listed_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that raises (a full disk, for the cold tier) leaves no half-done demotion
    behind to be taken for finished: the next pass lists the handle again and ends it."""
    now = [0.0]
    store = Store(
        Config(idle_agent_warm_seconds=60, warm_group_bytes=16 << 10),
        clock=lambda: now[0],
        far_memory=None,
    )
    idle = store.register_agent("idle", state="idle")
    conv = [message(i) for i in range(120)]
    a = store.alloc_smu(SMUType.CONVERSATION, conv, idle)
    real = store.demote_chunks
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> int:
        calls[0] += 1
        if calls[0] == 2:  # the fault: a disk that filled up (cannot be caused here)
            raise DiskFull("no space left")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "demote_chunks", failing)
    now[0] = 61.0
    passed = time.monotonic() + 60  # a pass long enough for the whole history
    with pytest.raises(DiskFull):
        demote_idle(store, passed)
    assert a not in store.demoting and a not in store.aged
    assert _tiers(store, a) == {Tier.WARM, Tier.HOT}  # the first group went down
    assert demote_idle(store, passed) > 0  # listed afresh: the rest goes down
    assert _tiers(store, a) == {Tier.WARM} and a in store.aged and not store.idle_backlog
    assert [bytes(m) for m in store.messages(a, 0, None)] == conv
    store.close()


def test_a_dictionary_trained_on_its_own_thread_is_taken_up_by_a_later_put() -> None:
    """The daemon trains a type's dictionary on a thread (the loop goes on meanwhile): frames
    made before it is ready have none and read back; the ones after use it."""
    cfg = Config(dict_train_bytes=32 << 10, dict_size=4096, warm_group_bytes=8 << 10)
    store = Store(cfg, far_memory=None)
    store.warm.background_training = True
    a = store.register_agent("a")
    first = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(60)], a)
    store.demote(first)  # past the training bytes: training starts, on its thread
    assert store.dictionaries.current(SMUType.CONVERSATION) is None  # not taken up yet
    store.warm.wait_training()
    trained = store.dictionaries.current(SMUType.CONVERSATION)
    assert trained is not None
    second = store.alloc_smu(SMUType.CONVERSATION, [message(100 + i) for i in range(30)], a)
    store.demote(second)
    ids = {read_header(g.frame).dict_id for g in _groups(store, second)}
    assert ids == {trained.dict_id}
    assert {read_header(g.frame).dict_id for g in _groups(store, first)} == {0}
    assert [bytes(m) for m in store.messages(first)] == [message(i) for i in range(60)]
    assert [bytes(m) for m in store.messages(second)] == [message(100 + i) for i in range(30)]
    store.close()


def _groups(store: Store, h: int) -> set[Any]:
    return {e.loc for n in store.refs[h].path for e in n.chunks}  # type: ignore[union-attr]
