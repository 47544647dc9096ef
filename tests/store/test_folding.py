"""Folded histories: an idle conversation's index as packed arrays, unfolded on first use."""

from __future__ import annotations

import pathlib
import sys

import pytest

from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import SMUType, Tier
from agentmem.store import Store
from agentmem.store.folding import FOLD_MIN_MESSAGES, fold
from agentmem.store.records import ConversationRef
from agentmem.store.tiering import maintain
from tests.conftest import message, text

CFG = Config(
    dict_train_bytes=64 << 10, dict_size=16 << 10, segment_bytes=1 << 20, idle_agent_warm_seconds=60
)
N = 200


def _ref(store: Store, h: Handle) -> ConversationRef:
    ref = store.refs[h]
    assert isinstance(ref, ConversationRef)
    return ref


def _texts(store: Store, h: Handle) -> list[bytes]:
    return [bytes(m) for m in store.messages(h)]


def _warm_conversation(store: Store, msgs: list[bytes], agent: str = "a") -> Handle:
    a = store.agents.get(agent) or store.register_agent(agent)
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, a)
    store.demote(h)
    return h


def test_an_idle_conversation_is_folded_by_the_maintenance_pass_and_reads_back_whole() -> None:
    now = [0.0]
    store = Store(CFG, clock=lambda: now[0], far_memory=None)
    idle = store.register_agent("idle", state="idle")
    busy = store.register_agent("busy")
    msgs = [message(i) for i in range(N)]
    h = store.alloc_smu(SMUType.CONVERSATION, msgs, idle)
    active = store.alloc_smu(SMUType.CONVERSATION, [message(1000 + i) for i in range(N)], busy)
    before = store.get_stats()
    chunks = len(store.chunks)
    now[0] = 61.0
    done = maintain(store)
    assert done["folded"] == N  # the idle one, taken down and folded in one pass
    assert _ref(store, h).folded is not None and _ref(store, active).folded is None
    assert len(store.chunks) == chunks - N and store.folded_messages == N
    after = store.get_stats()
    assert after.messages == before.messages and after.handles == before.handles
    assert after.chunks == before.chunks and after.folded_messages == N
    assert after.logical_bytes == before.logical_bytes and after.unique_bytes == before.unique_bytes
    # ~200 bytes of index a message become ~44.
    assert before.metadata_bytes - after.metadata_bytes > N * 100
    split = {a.name: a for a in after.per_agent}["idle"]
    assert split.unique_bytes == sum(map(len, msgs)) == split.compressed_bytes
    assert maintain(store)["folded"] == 0  # nothing new: not looked at again
    assert store.check().ok  # walks every history: unfolds it, without a use
    assert _ref(store, h).folded is None
    assert maintain(store)["folded"] == N  # so the next pass folds it again

    assert _texts(store, h) == msgs  # the first use unfolds it
    assert _ref(store, h).folded is None and store.folded_messages == 0
    assert len(store.chunks) == chunks and store.check().ok
    store.close()


def test_a_folded_conversation_takes_appends_forks_and_releases() -> None:
    store = Store(CFG, far_memory=None)
    msgs = [message(i) for i in range(N)]
    h = _warm_conversation(store, msgs)
    assert fold(store, _ref(store, h)) == N
    store.append(h, message(N))
    assert _texts(store, h) == [*msgs, message(N)]
    assert store.check().ok

    store.demote(h)
    assert fold(store, _ref(store, h)) == N + 1
    f = store.fork(h)
    store.append(f, message(5000))
    assert _texts(store, f) == [*msgs, message(N), message(5000)]

    # The fork point stays a node; only what follows it folds.
    store.append(h, message(6000))
    store.demote(h)
    assert fold(store, _ref(store, h), min_messages=1) == 1
    store.release(f)  # the fork's own messages freed, the shared history kept
    assert store.check().ok
    store.release(h)  # released folded: nothing is unfolded, everything freed
    s = store.get_stats()
    assert s.messages == 0 and s.chunks == 0 and store.warm.stats().chunks == 0
    assert store.check().ok and not store.nodes and not store.chunks
    store.close()


def test_content_stored_again_while_folded_is_one_copy_after_unfolding() -> None:
    store = Store(CFG, far_memory=None)
    msgs = [message(i) for i in range(N)]
    h = _warm_conversation(store, msgs)
    fold(store, _ref(store, h))
    # Message 7's bytes again, in another conversation: not found while folded, so stored.
    other = store.alloc_smu(SMUType.CONVERSATION, [message(7)], store.agents["a"])
    warm_chunks = store.warm.stats().chunks
    assert _ref(store, h).tip is not None  # unfolded, nothing read or promoted
    assert store.warm.stats().chunks == warm_chunks - 1  # the folded copy was dropped
    entry = store.chunks[_ref(store, h).path[7].chunks[0].id]
    assert entry.refs == 2 and entry.tier is Tier.HOT
    assert _texts(store, h) == msgs
    assert _texts(store, other) == [message(7)]
    assert store.check().ok
    store.release(h)
    assert _texts(store, other) == [message(7)] and store.check().ok
    store.close()


def test_messages_made_of_shared_chunks_fold_and_keep_their_claims() -> None:
    store = Store(CFG, far_memory=None)
    # Messages 3 and 10 repeat earlier ones: those nodes refer to shared entries.
    msgs = [message(i % 100 if i not in (103, 110) else i - 100) for i in range(N)]
    h = _warm_conversation(store, msgs)
    holder = store.alloc_smu(SMUType.CONVERSATION, [message(3)], store.agents["a"])
    assert fold(store, _ref(store, h)) == N
    f = _ref(store, h).folded
    assert f is not None and len(f.shared) >= 2
    assert _texts(store, holder) == [message(3)]
    assert _texts(store, h) == msgs and store.check().ok
    store.close()


def test_candidates_of_a_folded_conversation_are_what_they_were() -> None:
    store = Store(CFG, far_memory=None)
    h = _warm_conversation(store, [message(i) for i in range(N)])
    before = sum(c.hot_bytes for c in store.candidates(Tier.WARM) if c.handle == h)
    fold(store, _ref(store, h))
    # One candidate, the whole history: nothing of it is recent to an idle agent.
    (c,) = store.candidates(Tier.WARM)
    assert c.handle == h and c.hot_bytes == before > 0 and c.keep == 0
    assert store.candidates(Tier.HOT) == []
    assert _ref(store, h).folded is not None  # listing did not unfold it
    store.close()


def test_hot_or_short_histories_are_not_folded() -> None:
    store = Store(CFG, far_memory=None)
    a = store.register_agent("a")
    hot = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(N)], a)
    assert fold(store, _ref(store, hot)) == 0
    short = _warm_conversation(store, [message(1000 + i) for i in range(FOLD_MIN_MESSAGES - 1)])
    assert fold(store, _ref(store, short)) == 0
    store.mark_hot(hot)
    store.close()


def test_folded_cold_histories_read_back_and_go_on_to_cold(tmp_path: pathlib.Path) -> None:
    store = Store(CFG, far_memory=None, state_dir=str(tmp_path))
    msgs = [message(i) for i in range(N)]
    h = _warm_conversation(store, msgs)
    fold(store, _ref(store, h))
    assert store.demote(h, to=Tier.COLD) == sum(map(len, msgs))  # unfolds to move
    assert fold(store, _ref(store, h)) == N  # cold groups fold as warm ones do
    assert store.warm.stats().chunks == 0
    assert _texts(store, h) == msgs and store.check().ok
    store.close()


@pytest.mark.parametrize("n", [1, 63, 64, 65, 200])
def test_marks_are_rebuilt_for_every_length(n: int) -> None:
    store = Store(CFG, far_memory=None)
    msgs = [message(i) for i in range(n)]
    h = _warm_conversation(store, msgs)
    fold(store, _ref(store, h), min_messages=1)
    for i in (0, n // 2, n - 1):
        assert [bytes(m) for m in store.messages(h, i, i + 1)] == [msgs[i]]
    assert _texts(store, h) == msgs and store.check().ok
    store.close()


def test_the_same_history_appended_meanwhile_is_the_same_nodes_after_unfolding() -> None:
    store = Store(CFG, far_memory=None)
    msgs = [message(i) for i in range(N)]
    h = _warm_conversation(store, msgs)
    fold(store, _ref(store, h))
    # Another conversation starts with the same three messages: equal message ids.
    other = store.alloc_smu(SMUType.CONVERSATION, msgs[:3], store.agents["a"])
    messages = store.get_stats().messages
    path = _ref(store, h).path  # unfolds
    assert path[:3] == _ref(store, other).path  # the same nodes, not copies
    assert path[2].refs == 2 and store.get_stats().messages == messages - 3
    assert _texts(store, h) == msgs and store.check().ok
    store.release(other)
    assert _texts(store, h) == msgs and store.check().ok
    store.release(h)
    assert store.get_stats().messages == 0 and store.check().ok
    store.close()


def test_the_index_dicts_are_copied_to_fit_once_most_of_them_folded() -> None:
    now = [0.0]
    store = Store(CFG, clock=lambda: now[0], far_memory=None)
    idle = store.register_agent("idle", state="idle")
    h = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(N)], idle)
    table = sys.getsizeof(store.chunks)
    now[0] = 61.0
    assert maintain(store)["folded"] == N
    assert len(store.chunks) == 0 and sys.getsizeof(store.chunks) < table / 4
    assert len(_texts(store, h)) == N and store.check().ok
    store.close()


def test_chunks_only_the_history_holds_are_folded_with_it() -> None:
    store = Store(CFG, far_memory=None)
    long = [text(7000 + i, 12_000) for i in range(3)]  # several chunks each
    msgs = [message(i) for i in range(N)] + long + [message(5), long[1], message(9)]
    h = _warm_conversation(store, msgs)
    chunks = store.get_stats().chunks
    assert fold(store, _ref(store, h)) == len(msgs)
    f = _ref(store, h).folded
    assert f is not None and not f.shared and len(f.c_sizes) > 3
    assert not store.chunks and not store.nodes  # nothing of it left as objects
    assert store.get_stats().chunks == chunks
    # One of its repeated messages stored again meanwhile: one copy after unfolding.
    other = store.alloc_smu(SMUType.CONVERSATION, [message(5)], store.agents["a"])
    assert _ref(store, h).tip is not None
    assert store.chunks[_ref(store, other).path[0].chunks[0].id].refs == 3
    assert _texts(store, h) == msgs and _texts(store, other) == [message(5)]
    assert store.check().ok
    store.release(h)
    assert _texts(store, other) == [message(5)] and store.check().ok
    store.close()
