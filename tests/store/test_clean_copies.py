"""Clean copies: content promoted out of a warm frame goes back into it, uncompressed, when it
is demoted again unchanged; the frame is RAM while it waits, and is counted and given back."""

from __future__ import annotations

import pathlib

from agentmem.config import Config
from agentmem.ids import Handle
from agentmem.states import SMUType, Tier
from agentmem.store import Store
from agentmem.store.records import WarmGroup
from agentmem.store.tiering import demote_cold
from tests.conftest import message
from tests.store.test_store_model import warm_accounting_holds

#: ~3.3 MB of distinct messages: three full 1 MiB groups and a smaller last one.
HISTORY = [message(i) for i in range(2000)]


def _store(**config: int) -> Store:
    return Store(Config(**config), far_memory=None)  # type: ignore[arg-type]


def _groups(store: Store, h: Handle) -> list[WarmGroup]:
    """The distinct warm groups holding the conversation's messages, in order."""
    out: dict[int, WarmGroup] = {}
    for node in store.refs[h].path:  # type: ignore[union-attr]
        for e in node.chunks:
            if isinstance(e.loc, WarmGroup):
                out.setdefault(id(e.loc), e.loc)
    return list(out.values())


def _read(store: Store, h: Handle) -> list[bytes]:
    return [bytes(m) for m in store.messages(h)]


def _demoted_history() -> tuple[Store, Handle, list[WarmGroup]]:
    """A store holding HISTORY demoted to warm: the store, the handle, its groups."""
    store = _store()
    h = store.alloc_smu(SMUType.CONVERSATION, HISTORY, store.register_agent("a"))
    store.demote(h)
    return store, h, _groups(store, h)


def test_a_history_read_and_demoted_again_goes_back_into_its_frames() -> None:
    store, h, first = _demoted_history()
    assert len(first) >= 4
    frames = store.warm.stats().containers
    assert _read(store, h) == HISTORY  # promoted: hot again, the frames kept as clean copies
    assert store.warm.stats().chunks == 0 and store.warm.frame_bytes == 0
    kept = store.warm.shadow_bytes
    assert kept == sum(len(g.frame) for g in first)
    assert store.get_stats().physical_bytes >= kept  # type: ignore[union-attr]
    encoded = store.warm.codec.encodes

    store.demote(h)
    again = _groups(store, h)
    # The full groups are the same frames; the last, under half a group, was compressed again.
    assert [id(g) for g in again[:-1]] == [id(g) for g in first[:-1]]
    assert again[-1] is not first[-1] and first[-1].raw_size < store.warm.group_bytes // 2
    full = sum(g.raw_size for g in first[:-1])
    assert store.warm.reinstated_bytes == full
    assert store.warm.shadow_bytes == 0
    assert store.warm.stats().containers == frames
    assert store.warm.codec.encodes - encoded == 1  # the last group's, nothing else
    assert _read(store, h) == HISTORY
    warm_accounting_holds(store)


def test_messages_appended_while_hot_go_into_new_frames_the_old_ones_back() -> None:
    store, h, first = _demoted_history()
    _read(store, h)
    more = [message(10_000 + i) for i in range(5)]
    store.extend(h, more)
    store.demote(h)
    again = _groups(store, h)
    assert {id(g) for g in first[:-1]} <= {id(g) for g in again}
    assert _read(store, h) == HISTORY + more
    warm_accounting_holds(store)


def test_releasing_a_promoted_history_gives_its_kept_frames_back() -> None:
    store, h, _ = _demoted_history()
    _read(store, h)
    assert store.warm.shadow_bytes > 0
    freed = store.warm.freed_frame_bytes
    store.release(h)
    assert store.warm.shadow_bytes == 0 and not store.warm.clean
    assert store.warm.freed_frame_bytes - freed > 0
    assert store.warm.stats().physical_bytes == 0
    warm_accounting_holds(store)


def test_a_fork_of_a_promoted_history_keeps_the_copies_right() -> None:
    store = _store()
    a, b = store.register_agent("a"), store.register_agent("b")
    h = store.alloc_smu(SMUType.CONVERSATION, HISTORY[:600], a)
    store.demote(h)
    _read(store, h)
    f = store.share_content(h, b)  # the tip gets an entry of its own: its copy follows it
    store.append(f, message(99_999))
    warm_accounting_holds(store)
    store.demote(h)
    store.demote(f)
    assert _read(store, h) == HISTORY[:600]
    assert _read(store, f) == [*HISTORY[:600], message(99_999)]
    store.release(h)
    warm_accounting_holds(store)
    store.release(f)
    assert store.warm.stats().physical_bytes == 0 and not store.warm.clean


def test_pinned_content_keeps_no_copy() -> None:
    store = _store()
    me = store.register_agent("a")
    h = store.alloc_smu(SMUType.TOOL_RESULT, b"".join(HISTORY[:300]), me)
    store.demote(h)
    assert store.warm.frame_bytes > 0
    store.mark_hot(h)
    assert not store.warm.clean and store.warm.shadow_bytes == 0
    assert store.warm.stats().physical_bytes == 0
    warm_accounting_holds(store)


def test_past_the_warm_budget_the_kept_frames_go_first(tmp_path: pathlib.Path) -> None:
    budget = 640 << 10
    store = Store(Config(warm_budget_bytes=budget), state_dir=str(tmp_path), far_memory=None)
    me = store.register_agent("a")
    h = store.alloc_smu(SMUType.CONVERSATION, HISTORY[:800], me)
    store.demote(h)
    assert 0 < store.warm.frame_bytes < budget
    _read(store, h)
    other = store.alloc_smu(SMUType.CONVERSATION, HISTORY[800:], me)
    store.demote(other, to=Tier.WARM)
    # Warm content alone is within the budget; with the frames kept for clean copies, not.
    assert store.warm.frame_bytes <= budget < store.warm.frame_bytes + store.warm.shadow_bytes
    demote_cold(store)
    assert store.warm.shadow_bytes == 0 and not store.warm.clean
    assert store.warm.frame_bytes <= budget
    assert _read(store, h) == HISTORY[:800]
    warm_accounting_holds(store)
