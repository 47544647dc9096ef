"""The journal: conversations written ahead, replayed into a new store after a crash."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import resource
import signal

import pytest

from agentmem.config import Config
from agentmem.errors import DiskFull
from agentmem.ids import Handle
from agentmem.states import AgentState, SMUType
from agentmem.stats import StoreStats
from agentmem.store import Store
from agentmem.store.journal import FILE_HEADER, RECORD
from agentmem.store.steps import run
from tests.conftest import message, step_through

CFG = Config(dict_train_bytes=64 << 10, dict_size=16 << 10, segment_bytes=1 << 20)
#: ``CFG`` with the journal rewritten at any size (once mostly dead).
REWRITE_ANY = dataclasses.replace(CFG, journal_rewrite_min_bytes=0)


def crash(store: Store) -> None:
    """What a SIGKILL leaves: synced records on disk, nothing released."""
    store.sync()
    store.close()


def texts(store: Store, h: Handle) -> list[bytes]:
    return [bytes(m) for m in store.messages(h)]


def test_a_crashed_store_comes_back_with_its_conversations(tmp_path: pathlib.Path) -> None:
    store = Store(CFG, state_dir=str(tmp_path))
    a = store.register_agent("alice")
    b = store.register_agent("bob")
    conv = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(5)], a)
    store.extend(conv, [message(5), message(6)])
    fork = store.share_content(conv, b)  # a fork, held by bob
    store.append(fork, message(100))
    gone = store.alloc_smu(SMUType.CONVERSATION, [message(200)], a)
    store.release(gone)
    prompt = store.alloc_smu(SMUType.SYSTEM_PROMPT, b"not journaled", a)
    crash(store)

    again = Store(CFG, state_dir=str(tmp_path))
    assert again.restored.conversations == 2 and again.restored.agents == 2
    assert again.restored.problems == []
    assert texts(again, conv) == [message(i) for i in range(7)]
    assert texts(again, fork) == [*[message(i) for i in range(7)], message(100)]
    assert again.refs[conv].agent.name == "alice" and again.refs[fork].agent.name == "bob"
    assert all(a.orphaned is not None and a.state is AgentState.IDLE for a in again.agents.values())
    assert gone not in again.refs and prompt not in again.refs
    assert again.check().ok
    stats = again.get_stats()
    assert isinstance(stats, StoreStats)
    conversations = stats.by_type["conversation"]
    assert conversations.handles == 2  # counted as the journal restored them
    assert conversations.logical_bytes == sum(again.refs[h].size for h in (conv, fork))
    # restored handles keep working, and are journaled again
    again.append(conv, message(7))
    new = again.new_handle()
    assert new not in again.refs
    crash(again)
    third = Store(CFG, state_dir=str(tmp_path))
    assert texts(third, conv) == [message(i) for i in range(8)]
    third.close()


def test_appends_that_cannot_be_journaled_are_not_stored(tmp_path: pathlib.Path) -> None:
    store = Store(CFG, state_dir=str(tmp_path))
    a = store.register_agent("a")
    conv = store.alloc_smu(SMUType.CONVERSATION, [message(0)], a)
    journal = store.journal
    assert journal is not None
    real = journal.fd
    journal.fd = os.open("/dev/full", os.O_WRONLY)  # the kernel's own ENOSPC
    with pytest.raises(DiskFull):
        store.append(conv, message(1))
    with pytest.raises(DiskFull):
        store.alloc_smu(SMUType.CONVERSATION, [message(2)], a)
    with pytest.raises(DiskFull):
        store.fork(conv)
    os.close(journal.fd)
    journal.fd = real
    assert texts(store, conv) == [message(0)] and store.length(conv) == 1
    assert store.check().ok
    assert len(store.refs) == 1 and a.logical_bytes == len(message(0))
    store.append(conv, message(1))  # space again: appends are stored and journaled
    crash(store)
    again = Store(CFG, state_dir=str(tmp_path))
    assert texts(again, conv) == [message(0), message(1)]
    again.close()


def test_an_extend_is_journaled_in_one_batch_and_stored_whole_or_not_at_all(
    tmp_path: pathlib.Path,
) -> None:
    store = Store(CFG, state_dir=str(tmp_path))
    a = store.register_agent("a")
    conv = store.alloc_smu(SMUType.CONVERSATION, [message(0)], a)
    journal = store.journal
    assert journal is not None
    size = journal.size
    # The file may grow by a few records only: the kernel fails the write past that (EFBIG),
    # in the middle of the batch.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4 * len(message(1)), limits[1]))
    try:
        with pytest.raises(DiskFull):
            store.extend(conv, [message(i) for i in range(1, 400)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert texts(store, conv) == [message(0)] and journal.size == size
    assert os.fstat(journal.fd).st_size == size and store.check().ok
    assert a.logical_bytes == len(message(0)) and store.get_stats().messages == 1
    # 600 messages: 1,200 parts, more than one pwritev may carry.
    store.extend(conv, [message(i) for i in range(1, 601)])
    crash(store)
    again = Store(CFG, state_dir=str(tmp_path))
    assert texts(again, conv) == [message(i) for i in range(601)]
    again.close()


def test_a_torn_tail_is_cut_and_earlier_records_survive(tmp_path: pathlib.Path) -> None:
    store = Store(CFG, state_dir=str(tmp_path))
    a = store.register_agent("a")
    conv = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(3)], a)
    crash(store)
    path = tmp_path / "journal.amj"
    whole = path.stat().st_size
    with open(path, "ab") as f:  # half a record: header promising more than is there
        f.write(RECORD.pack(b"AJ", 2, 0, 5000, conv, bytes(32)) + b"partial")
    again = Store(CFG, state_dir=str(tmp_path))
    assert again.restored.truncated_bytes > 0 and path.stat().st_size == whole
    assert texts(again, conv) == [message(i) for i in range(3)]
    again.close()


def test_a_record_damaged_in_place_is_skipped_and_reported(tmp_path: pathlib.Path) -> None:
    store = Store(CFG, state_dir=str(tmp_path))
    a = store.register_agent("a")
    first = store.alloc_smu(SMUType.CONVERSATION, [message(1)], a)
    second = store.alloc_smu(SMUType.CONVERSATION, [message(2)], a)
    crash(store)
    path = tmp_path / "journal.amj"
    data = bytearray(path.read_bytes())
    # records: CONV first, APPEND first, CONV second, ...: damage APPEND first's data
    at = FILE_HEADER.size + RECORD.size + len(b"a") + RECORD.size + 10
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    again = Store(CFG, state_dir=str(tmp_path))
    assert again.journal is not None and again.journal.bad_records == 1
    assert any("damaged" in p for p in again.restored.problems)
    assert texts(again, first) == []  # its message is lost, and said to be
    assert texts(again, second) == [message(2)]  # the rest replays
    again.close()


def test_orphans_not_reclaimed_are_released_after_their_time(tmp_path: pathlib.Path) -> None:
    now = [0.0]
    cfg = Config(orphan_keep_seconds=60, segment_bytes=1 << 20)
    store = Store(cfg, state_dir=str(tmp_path), clock=lambda: now[0])
    store.alloc_smu(SMUType.CONVERSATION, [message(1)], store.register_agent("a"))
    crash(store)
    again = Store(cfg, state_dir=str(tmp_path), clock=lambda: now[0])
    assert again.restored.agents == 1
    now[0] = 30.0
    again.maintain()
    assert "a" in again.agents
    now[0] = 61.0
    again.maintain()
    assert again.agents == {} and again.refs == {}
    crash(again)
    third = Store(cfg, state_dir=str(tmp_path))
    assert third.restored.conversations == 0  # the release was journaled
    third.close()


def test_relaxed_mode_syncs_in_maintenance_not_per_append(tmp_path: pathlib.Path) -> None:
    import dataclasses

    store = Store(dataclasses.replace(CFG, durable_sync=False), state_dir=str(tmp_path))
    journal = store.journal
    assert journal is not None
    conv = store.alloc_smu(SMUType.CONVERSATION, [message(1)], store.register_agent("a"))
    store.append(conv, message(2))
    assert journal.dirty and not store.sync()  # relaxed: the reply does not wait
    store.maintain()
    assert not journal.dirty and journal.syncs >= 1
    store.close()


def test_the_journal_is_rewritten_once_mostly_dead(tmp_path: pathlib.Path) -> None:
    store = Store(REWRITE_ANY, state_dir=str(tmp_path))
    a = store.register_agent("a")
    keep = store.alloc_smu(SMUType.CONVERSATION, [message(i) for i in range(3)], a)
    for i in range(30):
        h = store.alloc_smu(SMUType.CONVERSATION, [message(1000 + i)] * 5, a)
        store.release(h)
    j = store.journal
    assert j is not None
    before = j.size
    saved = store.compact_journal()
    assert saved > 0 and j.size == before - saved
    store.append(keep, message(3))
    crash(store)
    again = Store(CFG, state_dir=str(tmp_path))
    assert texts(again, keep) == [message(i) for i in range(4)]
    assert again.restored.conversations == 1
    again.close()


def replayed(store: Store, tmp_path: pathlib.Path) -> dict[Handle, list[bytes]]:
    """Crash ``store``; the conversations a new store restores from its journal."""
    crash(store)
    again = Store(CFG, state_dir=str(tmp_path))
    got = {h: texts(again, Handle(h)) for h in again.refs}
    again.close()
    return got


def _dead_journal(tmp_path: pathlib.Path) -> tuple[Store, list[Handle]]:
    """A store whose journal is mostly released conversations, and three live ones."""
    store = Store(REWRITE_ANY, state_dir=str(tmp_path))
    a, b = store.register_agent("a"), store.register_agent("b")
    live = [
        store.alloc_smu(SMUType.CONVERSATION, [message(10 * k + i) for i in range(40)], ag)
        for k, ag in enumerate((a, b, a))
    ]
    for i in range(30):
        store.release(store.alloc_smu(SMUType.CONVERSATION, [message(1000 + i)] * 9, a))
    return store, live


def test_a_rewrite_in_steps_keeps_what_was_written_meanwhile(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the steps of a rewrite the store goes on: appends to a conversation being
    rewritten, a new conversation, a fork, a release. The new journal replays to exactly the
    live store (each message once), and it is smaller."""
    from agentmem.store import journal as jmod

    monkeypatch.setattr(jmod, "_IOV_PARTS", 8)  # a step every 4 records
    store, (one, two, three) = _dead_journal(tmp_path)
    j = store.journal
    assert j is not None
    before = j.size
    steps = store.compact_journal_steps()
    assert steps is not None
    saved, taken, results = step_through(
        steps,
        [
            lambda: store.append(one, message(500)),  # its records are being written
            lambda: store.release(three),  # live when the rewrite began
            lambda: store.append(two, message(501)),
            lambda: store.fork(one),
            lambda: store.alloc_smu(SMUType.CONVERSATION, [message(502)], "b"),
        ],
    )
    made = [Handle(h) for h in results if isinstance(h, int)]
    assert taken > 5 and saved > 0 and j.size < before
    assert not any(p.name.endswith(".new") for p in tmp_path.rglob("*"))
    expected = {h: texts(store, h) for h in store.refs}
    assert set(expected) == {one, two, *made}
    assert expected[one][-1] == message(500) and expected[two][-1] == message(501)
    assert replayed(store, tmp_path) == expected


def test_a_rewrite_is_abandoned_when_a_fork_needs_what_it_left_out(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversation forked and then released while the rewrite went on, before its own
    records were written: the new file would lack what the fork needs, so it is dropped and
    the old journal stays; a rewrite closed early leaves no file behind either."""
    from agentmem.store import journal as jmod

    monkeypatch.setattr(jmod, "_IOV_PARTS", 8)
    store, (one, two, three) = _dead_journal(tmp_path)
    j = store.journal
    assert j is not None
    steps = store.compact_journal_steps()
    assert steps is not None
    next(steps)  # the rewrite is on its first conversation
    fork = store.fork(three)
    store.release(three)  # left out: it had not been reached
    before = j.size
    assert run(steps) == 0  # abandoned
    assert j.size == before  # the same file
    assert not any(p.name.endswith(".new") for p in tmp_path.rglob("*"))
    expected = {h: texts(store, h) for h in store.refs}
    assert set(expected) == {one, two, fork}
    steps = store.compact_journal_steps()  # tried again: nothing left out now
    assert steps is not None
    next(steps)
    steps.close()  # closed early: no file behind, the journal as it was
    assert j.size == before and not any(p.name.endswith(".new") for p in tmp_path.rglob("*"))
    assert store.compact_journal() > 0
    assert replayed(store, tmp_path) == expected


def test_what_is_written_before_a_rewrite_takes_its_first_step_is_kept(
    tmp_path: pathlib.Path,
) -> None:
    """A rewrite begins when it is made, not at its first step: an append served in between
    is one of the records written meanwhile (the conversations are as they were when it was
    made), not lost between the two."""
    store, (one, _two, _three) = _dead_journal(tmp_path)
    steps = store.compact_journal_steps()
    assert steps is not None
    store.append(one, message(800))
    store.alloc_smu(SMUType.CONVERSATION, [message(801)], "b")
    assert run(steps) > 0
    expected = {h: texts(store, h) for h in store.refs}
    assert expected[one][-1] == message(800)
    assert replayed(store, tmp_path) == expected


def test_a_conversation_appended_to_and_released_before_the_rewrite_reached_it_replays_cleanly(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends to a conversation that the rewrite has not reached yet, then its release: the
    copied records name it (its appends, its ``DROP``), so the new file must create it too;
    a restart replays it without a problem and without it."""
    from agentmem.store import journal as jmod

    monkeypatch.setattr(jmod, "_IOV_PARTS", 8)
    store, live = _dead_journal(tmp_path)
    three = live[2]
    steps = store.compact_journal_steps()
    assert steps is not None
    next(steps)  # the rewrite is on its first conversation
    store.append(three, message(700))
    store.release(three)
    assert run(steps) > 0
    expected = {h: texts(store, h) for h in store.refs}
    crash(store)
    again = Store(CFG, state_dir=str(tmp_path))
    try:
        assert again.restored.problems == []
        assert {h: texts(again, Handle(h)) for h in again.refs} == expected
    finally:
        again.close()


def test_the_maintenance_pass_rewrites_the_journal_a_step_at_a_time(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentmem.store import journal as jmod
    from agentmem.store import tiering

    monkeypatch.setattr(jmod, "_IOV_PARTS", 8)
    monkeypatch.setattr(tiering, "IDLE_PASS_SECONDS", 0.0)  # one step a pass
    store, live = _dead_journal(tmp_path)
    j = store.journal
    assert j is not None
    before = j.size
    passes = 0
    done = store.maintain()
    while store.journal_rewrite is not None:
        assert done["backlog"] == 1  # the daemon comes back soon for the rest
        passes += 1
        store.append(live[0], message(600 + passes))  # served between the passes
        done = store.maintain()
    assert passes > 3 and done["journal_reclaimed"] > 0 and j.size < before
    # A rewrite that passes have begun is finished, not raced, by a direct call.
    for i in range(30):
        store.release(store.alloc_smu(SMUType.CONVERSATION, [message(2000 + i)] * 9, "a"))
    store.maintain()
    assert store.journal_rewrite is not None
    assert store.compact_journal() > 0 and store.journal_rewrite is None
    expected = {h: texts(store, h) for h in store.refs}
    assert replayed(store, tmp_path) == expected
