"""A model-based test: random sequences of store operations against a plain-Python model.

After every step, every live handle reads back exactly what the model says, and the store's
mark-sweep check finds no drift, no orphan and no corruption.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import SMUType
from agentmem.store import Store, StoreStats
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
        self.store = Store(
            Config(segment_bytes=256 << 10, dict_train_bytes=32 << 10, dict_size=4096)
        )
        self.agents = [self.store.register_agent(n) for n in ("a", "b", "c")]
        self.model: dict[int, bytes | list[bytes]] = {}

    def teardown(self) -> None:
        self.store.close()

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

    @rule()
    def compact(self) -> None:
        self.store.compact()

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
        assert s.handles == len(self.model)
        assert s.logical_bytes == sum(
            sum(map(len, v)) if isinstance(v, list) else len(v) for v in self.model.values()
        )
        if not self.model:
            assert s.chunks == 0 and s.unique_bytes == 0


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestStoreModel = StoreMachine.TestCase
