"""A model-based test: random sequences of store operations against a plain-Python model.

After every step, every live handle reads back exactly what the model says, and the store's
mark-sweep check finds no drift, no orphan and no corruption. A statistics walk in steps
(``Store.get_stats_steps``) and an idle handle's demotion (a warm group a pass) may be in
progress across any of the operations.
"""

from __future__ import annotations

import time

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import SMUType
from agentmem.stats import AgentStats
from agentmem.store import Store, StoreStats, accounting, layout, steps, tiering
from agentmem.store.records import WarmGroup
from agentmem.store.segments import Segment
from tests.conftest import text

# A small alphabet of contents so that dedup hits are frequent.
CONTENTS = [text(i, n) for i, n in enumerate([10, 700, 5000, 20_000, 70_000])]
CONTENTS.append(CONTENTS[3][:9000] + b"<env>cwd=/x</env>" + CONTENTS[3][9000:])
MESSAGES = [text(100 + i, 50 + 400 * i) for i in range(6)]


class StoreMachine(RuleBasedStateMachine):
    smus = Bundle("smus")
    convs = Bundle("convs")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.store = Store(
            Config(
                segment_bytes=256 << 10,
                dict_train_bytes=32 << 10,
                dict_size=4096,
                # Small groups, so that clean copies of groups over half of it are put back.
                warm_group_bytes=8192,
                warm_after_seconds=60,
            ),
            clock=lambda: self.now,
        )
        self.agents = [self.store.register_agent(n) for n in ("a", "b", "c")]
        self.model: dict[int, bytes | list[bytes]] = {}
        #: A statistics walk in progress, advanced by ``walk_steps`` between operations.
        self.walk: accounting.Steps | None = None
        self._step, accounting.STEP = accounting.STEP, 3  # many steps even for a small store
        self._scan, layout.SCAN_STEP = layout.SCAN_STEP, 3

    def teardown(self) -> None:
        accounting.STEP = self._step
        layout.SCAN_STEP = self._scan
        if self.walk is not None:
            self.walk.close()
        self.store.close()

    @rule(seconds=st.sampled_from([0, 30, 61]))
    def age_step(self, seconds: int) -> None:
        """Time passes and the age pass takes one step (a warm group) of a due handle: a
        demotion may be part-way across any of the operations."""
        self.now += seconds
        tiering.demote_idle(self.store, time.monotonic() - 1.0)

    @rule()
    def start_walk(self) -> None:
        if self.walk is None:
            self.walk = self.store.get_stats_steps()

    @rule(steps=st.integers(1, 8))
    def walk_steps(self, steps: int) -> None:
        """Advance the walk; once done, its figures are sane whatever changed meanwhile."""
        if self.walk is None:
            return
        for _ in range(steps):
            try:
                next(self.walk)
            except StopIteration as done:
                self.walk = None
                stats = done.value
                assert isinstance(stats, StoreStats)
                assert [a.name for a in stats.per_agent] == ["a", "b", "c"]
                for a in stats.per_agent:
                    assert a.unique_bytes is not None and a.unique_bytes >= 0
                    assert a.shared_bytes is not None and a.shared_bytes >= 0
                    assert a.compressed_bytes is not None and a.compressed_bytes >= 0
                assert stats.messages == self.store.message_count  # the totals: at the end
                assert stats.handles == len(self.model)
                return

    @rule(
        target=smus,
        content=st.sampled_from(CONTENTS),
        agent=st.integers(0, 2),
        smu_type=st.sampled_from([t for t in SMUType if t is not SMUType.CONVERSATION]),
    )
    def alloc(self, content: bytes, agent: int, smu_type: SMUType) -> Handle:
        h = self.store.alloc_smu(smu_type, content, self.agents[agent])
        self.model[h] = content
        return h

    @rule(
        target=convs, agent=st.integers(0, 2), msgs=st.lists(st.sampled_from(MESSAGES), max_size=4)
    )
    def new_conversation(self, agent: int, msgs: list[bytes]) -> Handle:
        h = self.store.alloc_smu(SMUType.CONVERSATION, msgs, self.agents[agent])
        self.model[h] = list(msgs)
        return h

    @rule(target=smus, h=smus, agent=st.integers(0, 2))
    def share(self, h: Handle, agent: int) -> Handle:
        if h not in self.model:
            return h
        new = self.store.share_content(h, self.agents[agent])
        self.model[new] = self.model[h]
        return new

    @rule(target=convs, h=convs, agent=st.integers(0, 2))
    def share_conversation(self, h: Handle, agent: int) -> Handle:
        if h not in self.model:
            return h
        new = self.store.share_content(h, self.agents[agent])  # a fork held by ``agent``
        self.model[new] = list(self.model[h])
        return new

    @rule(target=convs, h=convs)
    def fork(self, h: Handle) -> Handle:
        if h not in self.model:
            return h
        new = self.store.fork(h)
        self.model[new] = list(self.model[h])
        return new

    @rule(h=convs, msg=st.sampled_from(MESSAGES))
    def append(self, h: Handle, msg: bytes) -> None:
        if h in self.model:
            self.store.append(h, msg)
            self.model[h].append(msg)  # type: ignore[union-attr]

    @rule(h=consumes(smus) | consumes(convs))
    def release(self, h: Handle) -> None:
        if h in self.model:
            self.store.release(h)
            del self.model[h]

    @rule(h=smus | convs)
    def demote(self, h: Handle) -> None:
        if h in self.model:
            self.store.demote(h)

    @rule(h=smus | convs, hot=st.booleans())
    def mark_hot(self, h: Handle, hot: bool) -> None:
        if h in self.model:
            self.store.mark_hot(h, hot)

    @rule(h=smus, name=st.sampled_from(["prompt", "tools"]))
    def publish(self, h: Handle, name: str) -> None:
        # A name holds a claim on its SMU that is no agent's: the per-agent splits ignore it.
        if h in self.model:
            if name in self.store.names:
                self.store.unpublish(name)
            self.store.publish(h, name)

    @rule()
    def compact(self) -> None:
        self.store.compact()  # finishes a compaction in steps in progress

    @rule(steps=st.integers(1, 6))
    def compaction_steps(self, steps: int) -> None:
        """A compaction in steps (every closed segment with anything in it, so there is
        work), advanced a few steps: operations come between its steps."""
        store = self.store
        if store.compaction is None:
            store.compaction = store.compact_steps(max_live_ratio=1.0)
        reclaimed = 0
        for _ in range(steps):
            if store.compaction is None:
                break
            try:
                next(store.compaction)
            except StopIteration as done:
                store.compaction = None
                reclaimed = done.value
        assert reclaimed >= 0

    @invariant()
    def reads_match_model(self) -> None:
        for h, expected in self.model.items():
            if isinstance(expected, list):
                assert [bytes(m) for m in self.store.messages(Handle(h))] == expected
            else:
                assert bytes(self.store.read(Handle(h))) == expected

    @invariant()
    def consistent(self) -> None:
        report = self.store.check()
        assert report.ok, report
        s = self.store.get_stats()
        assert isinstance(s, StoreStats)
        assert steps.run(self.store.get_stats_steps()) == s  # steps, nothing changing
        assert s.handles == len(self.model)
        assert s.logical_bytes == sum(
            sum(map(len, v)) if isinstance(v, list) else len(v) for v in self.model.values()
        )
        if not self.model and not self.store.names:  # a name keeps its SMU
            assert s.chunks == 0 and s.unique_bytes == 0
        # Per-type figures come from counters kept as handles come and go: recount them.
        for t in SMUType:
            refs = [r for r in self.store.refs.values() if r.smu_type is t]
            assert s.by_type[t.label].handles == len(refs), t
            assert s.by_type[t.label].logical_bytes == sum(r.size for r in refs), t
        warm_accounting_holds(self.store)
        # One agent's split, from its own records, is what the store-wide walk says.
        for agent in self.agents:
            one = self.store.get_stats(agent)
            assert isinstance(one, AgentStats)
            (walked,) = [a for a in s.per_agent if a.name == agent.name]
            assert one == walked, (one, walked)


def warm_accounting_holds(store: Store) -> None:
    """The warm tier's counts and clean copies agree with a recount from the entries."""
    entries = {id(e): e for e in store.chunks.values()}
    for node in store.nodes.values():
        for e in node.chunks:
            entries[id(e)] = e
    live: dict[int, int] = {}
    groups: dict[int, WarmGroup] = {}
    for e in entries.values():
        if isinstance(e.loc, WarmGroup):
            live[id(e.loc)] = live.get(id(e.loc), 0) + 1
            groups[id(e.loc)] = e.loc
    warm = store.warm
    clean: dict[int, int] = {}
    for e, group in warm.clean.items():
        assert id(e) in entries and e.refs > 0, "a clean copy of a freed chunk"
        assert isinstance(e.loc, Segment), "a clean copy of a chunk that is not hot"
        assert group.members is not None and e in group.members
        clean[id(group)] = clean.get(id(group), 0) + 1
        groups[id(group)] = group
    for gid, group in groups.items():
        assert group.live == live.get(gid, 0)
        assert group.clean == clean.get(gid, 0)
    stats = warm.stats()
    assert stats.chunks == sum(live.values())
    assert stats.containers == len(live)
    assert warm.frame_bytes == sum(len(groups[g].frame) for g in live)
    assert warm.shadow_bytes == sum(len(g.frame) for k, g in groups.items() if k not in live)


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestStoreModel = StoreMachine.TestCase
