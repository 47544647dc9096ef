"""Eviction policies: pure choosers, compared on the same candidates; and the store acting."""

from __future__ import annotations

from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store import Store
from agentmem.store.policy import Candidate, LRUPolicy, SemanticPolicy
from agentmem.store.tiering import enforce_budget
from tests.conftest import message, text


def cand(h: int, state: AgentState, touched: float, **kw: object) -> Candidate:
    fields: dict[str, object] = {
        "hot_bytes": 100,
        "importance": 0,
        "smu_type": SMUType.CONVERSATION,
        "holders": 1,
        "pinned": False,
    }
    fields.update(kw)
    return Candidate(Handle(h), state=state, touched=touched, **fields)  # type: ignore[arg-type]


def handles(chosen: list[Candidate]) -> list[int]:
    return [c.handle for c in chosen]


CANDIDATES = [
    cand(1, AgentState.ACTIVE, touched=1.0),  # oldest, but its agent is working
    cand(2, AgentState.IDLE, touched=9.0),  # recent, but its agent is idle
    cand(3, AgentState.PAUSED, touched=5.0),
    cand(4, AgentState.IDLE, touched=2.0, smu_type=SMUType.SYSTEM_PROMPT, holders=30),
    cand(5, AgentState.IDLE, touched=0.5, pinned=True),
    cand(6, AgentState.IDLE, touched=8.0, importance=5),
]


def test_semantic_order_follows_meaning() -> None:
    order = handles(SemanticPolicy().choose(CANDIDATES, need=10_000, now=10.0))
    # idle before paused before active; importance within a state; the shared prompt last;
    # the pinned one never
    assert order == [2, 6, 3, 1, 4]


def test_lru_order_follows_age_only() -> None:
    assert handles(LRUPolicy().choose(CANDIDATES, need=10_000, now=10.0)) == [1, 4, 3, 6, 2]


def test_policies_stop_once_enough_is_chosen() -> None:
    assert handles(SemanticPolicy().choose(CANDIDATES, need=150, now=10.0)) == [2, 6]
    assert SemanticPolicy().choose(CANDIDATES, need=0, now=10.0) == []


def test_older_messages_of_an_active_agent_go_before_its_recent_ones() -> None:
    old = cand(1, AgentState.ACTIVE, touched=9.0, keep=8)
    recent = cand(1, AgentState.ACTIVE, touched=9.0, recent=True)
    other = cand(2, AgentState.ACTIVE, touched=1.0, recent=True)
    assert SemanticPolicy().choose([recent, other, old], need=10_000, now=10.0) == [
        old,
        other,
        recent,
    ]


def test_store_within_budget_keeps_the_active_agent_hot() -> None:
    now = [0.0]
    store = Store(Config(hot_budget_bytes=200_000, segment_bytes=1 << 20), clock=lambda: now[0])
    worker = store.register_agent("worker", state="active")
    sleeper = store.register_agent("sleeper", state="idle")
    busy = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(80)], worker)
    now[0] = 1.0
    dozing = store.alloc_smu(SMUType.CONVERSATION, [message(100 + i) for i in range(80)], sleeper)
    prompt = store.alloc_smu(SMUType.SYSTEM_PROMPT, text(1, 50_000), worker)
    store.share_content(prompt, sleeper)
    now[0] = 2.0
    # The budget holds as content arrives, not only at the next maintenance pass.
    assert store.hot.live_bytes <= 200_000
    assert store.demoted_bytes[Tier.WARM] > 0
    assert enforce_budget(store) == 0  # nothing left to do
    sleeper_chunks = {e.tier for n in store.refs[dozing].path[:-8] for e in n.chunks}  # type: ignore[union-attr]
    worker_chunks = {e.tier for n in store.refs[busy].path for e in n.chunks}  # type: ignore[union-attr]
    assert sleeper_chunks == {Tier.WARM}  # the idle agent's conversation went first
    assert Tier.HOT in worker_chunks
    assert bytes(store.read(prompt)) == text(1, 50_000)
    assert store.check().ok
    store.close()


def test_content_unused_for_the_idle_time_goes_warm() -> None:
    from agentmem.store.tiering import demote_idle

    now = [0.0]
    store = Store(Config(warm_after_seconds=300), clock=lambda: now[0])
    a = store.register_agent("a")
    old = store.alloc_smu(SMUType.TOOL_RESULT, text(2, 30_000), a)
    now[0] = 200.0
    recent = store.alloc_smu(SMUType.TOOL_RESULT, text(3, 30_000), a)
    now[0] = 350.0
    assert demote_idle(store) == 30_000  # only the one untouched for 300 s
    assert store.refs[old].touched == 0.0  # being demoted is not a use of the handle
    assert {e.tier for e in store.refs[old].smu.chunks} == {Tier.WARM}  # type: ignore[union-attr]
    assert {e.tier for e in store.refs[recent].smu.chunks} == {Tier.HOT}  # type: ignore[union-attr]
    assert bytes(store.read(old)) == text(2, 30_000)
    assert store.refs[old].touched == 350.0  # being read is
    # ... and promotes it, counted against the reader's state
    assert {e.tier for e in store.refs[old].smu.chunks} == {Tier.HOT}  # type: ignore[union-attr]
    assert store.promotions[AgentState.ACTIVE] == 1
    assert store.promoted_bytes[AgentState.ACTIVE] == 30_000
    store.close()


def test_an_idle_agent_is_demoted_sooner_than_an_active_one() -> None:
    from agentmem.store.tiering import demote_idle

    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0])
    idle, busy = store.register_agent("idle", state="idle"), store.register_agent("busy")
    long_conv = [message(i) for i in range(20)]  # longer than the recent part: all of it goes
    a = store.alloc_smu(SMUType.CONVERSATION, long_conv, idle)
    b = store.alloc_smu(SMUType.CONVERSATION, [message(100 + i) for i in range(20)], busy)
    now[0] = 61.0
    assert demote_idle(store) == sum(len(m) for m in long_conv)
    assert {e.tier for n in store.refs[a].path for e in n.chunks} == {Tier.WARM}  # type: ignore[union-attr]
    assert {e.tier for n in store.refs[b].path for e in n.chunks} == {Tier.HOT}  # type: ignore[union-attr]
    store.close()


def test_a_read_larger_than_the_budget_is_served_without_breaking_it() -> None:
    store = Store(Config(hot_budget_bytes=50_000, segment_bytes=1 << 20))
    a = store.register_agent("a")
    big = store.alloc_smu(SMUType.TOOL_RESULT, text(7, 120_000), a)  # demoted to make room
    assert store.hot.live_bytes <= 50_000
    store.alloc_smu(SMUType.TOOL_RESULT, text(8, 40_000), a)
    assert bytes(store.read(big)) == text(7, 120_000)  # decoded, not promoted
    assert store.hot.live_bytes <= 50_000 and store.promotions[AgentState.ACTIVE] == 0
    store.mark_hot(big)  # a pin is the exception: it asks for hot, whatever the budget
    assert {e.tier for e in store.refs[big].smu.chunks} == {Tier.HOT}  # type: ignore[union-attr]
    store.close()


def test_chunks_other_conversations_hold_are_not_demoted_with_an_idle_one() -> None:
    """An idle agent's conversation goes warm; the system message every conversation repeats
    stays hot, so the active agent's next read promotes nothing (no ping-pong each tick)."""
    now = [0.0]
    store = Store(Config(warm_after_seconds=300), clock=lambda: now[0], far_memory=None)
    a, b = store.register_agent("a"), store.register_agent("b", state="idle")
    common = b'{"role":"system","content":"' + b"You are a helpful agent. " * 100 + b'"}'
    ca = store.alloc_smu(SMUType.CONVERSATION, [common, b"task of a"], a)
    cb = store.alloc_smu(SMUType.CONVERSATION, [common, b"task of b"], b)
    for t in range(10, 400, 10):
        now[0] = float(t)
        store.messages(ca)
        store.maintain()
    assert store.promotions[AgentState.ACTIVE] == 0
    tiers = [e.tier for n in store.refs[cb].path for e in n.chunks]  # type: ignore[union-attr]
    assert tiers == [Tier.HOT, Tier.WARM]  # b's own message went; the shared one stayed
    store.close()


def test_an_append_never_leaves_the_hot_tier_over_budget() -> None:
    import random

    now = [0.0]
    cfg = Config(
        hot_budget_bytes=200_000, lru_policy=True, warm_after_seconds=0, idle_agent_warm_seconds=0
    )
    store = Store(cfg, clock=lambda: now[0], far_memory=None)
    owner = store.register_agent("o")
    h = store.alloc_smu(SMUType.SYSTEM_PROMPT, random.Random(1).randbytes(30_000), owner)
    store.publish(h, "p")
    store.release(h)
    for i in range(10):  # one prompt, listed once per handle by the candidates
        store.open("p", store.register_agent(f"agent-{i}"))
    now[0] = 10.0
    c = store.alloc_smu(SMUType.CONVERSATION, [], store.agent("agent-0"))
    for i in range(160):
        store.append(c, (b"%06d" % i) * 171)
        assert store.hot.live_bytes <= 200_000
    store.append(c, b"".join(b"%08d" % i for i in range(6250)))
    assert store.hot.live_bytes <= 200_000
    assert store.check().ok
    store.close()


def test_a_history_prefix_other_conversations_share_stays_hot() -> None:
    """Two agents start from the same three messages (one task template): message ids chain,
    so those nodes are shared, and only the fork point counts them twice. Demoting the idle
    agent's conversation must leave the whole shared prefix hot."""
    now = [0.0]
    store = Store(Config(idle_agent_warm_seconds=60), clock=lambda: now[0], far_memory=None)
    a, b = store.register_agent("a"), store.register_agent("b", state="idle")
    prefix = [message(i) for i in range(3)]
    ca = store.alloc_smu(SMUType.CONVERSATION, [*prefix, message(10)], a)
    cb = store.alloc_smu(SMUType.CONVERSATION, [*prefix, message(20), message(21)], b)
    now[0] = 61.0
    store.maintain()
    tiers = [n.chunks[0].tier for n in store.refs[cb].path]  # type: ignore[union-attr]
    assert tiers == [Tier.HOT] * 3 + [Tier.WARM] * 2
    store.messages(ca)
    assert store.promotions[AgentState.ACTIVE] == 0
    store.close()
