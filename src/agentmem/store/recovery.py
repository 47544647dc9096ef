"""Coming back from a crash, and putting drifted books right.

:func:`restore` replays the journal into a new store: every conversation that was live when
the previous daemon died comes back under its old handle number, held by its agent, restored
as an *orphan* (no process attached) until a client connects under that agent's name and
adopts it. Chunks an earlier run's packs hold are placed cold where they are (their index is
rebuilt by scanning the packs); the rest is placed as any new content is, under the budgets.

:func:`compact_journal` rewrites the journal as the live conversations once dead records
dominate it; :func:`repair` is ``agentmem check --repair``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from agentmem.errors import AgentmemError
from agentmem.hashing import chunk_id
from agentmem.ids import Handle, short
from agentmem.states import AgentState, SMUType
from agentmem.store import conversations, journal, layout, steps
from agentmem.store.check import CheckReport, recount, run_check
from agentmem.store.records import Agent, ConversationRef, MessageNode

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from agentmem.store.journal import Journal, Record
    from agentmem.store.store import Store

log = logging.getLogger("agentmem.store")


@dataclasses.dataclass(slots=True)
class Restored:
    """What :func:`restore` found."""

    records: int = 0
    """Journal records replayed."""
    conversations: int = 0
    """Conversations live at the end of the replay."""
    agents: int = 0
    """Orphan agents holding them."""
    messages: int = 0
    """Messages appended by the replay (shared prefixes counted each time)."""
    cold_chunks: int = 0
    """Chunks placed in earlier packs instead of being stored again."""
    truncated_bytes: int = 0
    """Bytes of torn tail cut from the journal and the packs."""
    problems: list[str] = dataclasses.field(default_factory=list)
    """Records that could not be applied (logged), one line each."""


def _orphan(store: Store, name: str) -> Agent:
    agent = store.agents.get(name)
    if agent is None:
        agent = store.register_agent(name, pid=0, state=AgentState.IDLE)
        agent.orphaned = store.clock()
    return agent


def _conversation(store: Store, h: Handle) -> ConversationRef | None:
    ref = store.refs.get(h)
    return ref if isinstance(ref, ConversationRef) else None


def _apply(store: Store, rec: Record, out: Restored) -> None:
    h = rec.handle
    if rec.kind == journal.CONV:
        if h in store.refs:
            raise ValueError(f"handle {h} created twice")
        agent = _orphan(store, rec.data.decode())
        new = ConversationRef(h, agent)
        new.touched = store.clock()
        store.refs[h] = new
        agent.handles += 1
        store.handles_by_type[SMUType.CONVERSATION] += 1
    elif rec.kind == journal.APPEND:
        ref = _conversation(store, h)
        if ref is None:
            raise ValueError(f"append to unknown conversation {h}")
        conversations.append(store, ref, rec.data)
        out.messages += 1
    elif rec.kind == journal.FORK:
        src = _conversation(store, Handle(int.from_bytes(rec.data[:8], "little")))
        if src is None or h in store.refs:
            raise ValueError(f"fork {h} of an unknown conversation")
        conversations.fork(store, src, _orphan(store, rec.data[8:].decode()), h)
    elif rec.kind == journal.DROP and h in store.refs:
        store.release(h)


def restore(store: Store, jrnl: Journal) -> Restored:
    """Replay ``jrnl`` into ``store`` (whose journal is not set yet, so nothing is logged
    twice). A record that cannot be applied is reported and skipped; the rest still apply."""
    out = Restored()
    cold = store.cold
    if cold is not None:
        cold.scan()
        store._claimable = bool(cold.index)
    try:
        for rec in jrnl.replay():
            out.records += 1
            try:
                _apply(store, rec, out)
            except (AgentmemError, ValueError, UnicodeDecodeError) as exc:
                line = f"journal record {out.records} ({short(rec.check)}): {exc}"
                log.error("restore: %s", line)
                out.problems.append(line)
    finally:
        store._claimable = False
    if cold is not None:
        out.cold_chunks = cold.stats().chunks
        out.truncated_bytes += cold.truncated_bytes
        cold.end_scan()
    out.truncated_bytes += jrnl.truncated_bytes
    if jrnl.bad_records:
        out.problems.append(
            f"{jrnl.bad_records} journal records damaged in place were skipped (their "
            "conversations may lack those messages or later ones)"
        )
    for agent in [a for a in store.agents.values() if a.orphaned is not None]:
        if agent.handles == 0:
            store.unregister_agent(agent)
    out.agents = sum(1 for a in store.agents.values() if a.orphaned is not None)
    out.conversations = sum(1 for r in store.refs.values() if isinstance(r, ConversationRef))
    if out.records:
        log.info(
            "restored %d conversations of %d agents from %d journal records",
            out.conversations,
            out.agents,
            out.records,
        )
    return out


def compact_journal(store: Store) -> int:
    """:meth:`Store.compact_journal`."""
    rewrite = journal_compaction(store)
    return 0 if rewrite is None else steps.run(rewrite)


def journal_compaction(store: Store) -> Generator[None, None, int] | None:
    """The journal's rewrite as the live conversations, in steps (``Journal.rewrite_steps``),
    or None when it is not due (below ``Config.journal_rewrite_min_bytes``, or under twice what
    the live conversations hold). Returns bytes saved.

    The store may be used between the steps: the conversations are the ones live when it
    began, each up to the length it had then, and what the journal gets meanwhile follows
    them as it is. A conversation released before all its records were written is left
    part-written, its ``CONV`` at least (the appends and the ``DROP`` that follow name it);
    if something written meanwhile forks from one, the rewrite is abandoned, to be tried
    again later."""
    jrnl = store.journal
    if jrnl is None or jrnl.size < store.config.journal_rewrite_min_bytes:
        return None
    refs = [r for r in store.refs.values() if isinstance(r, ConversationRef)]
    live = sum(r.size + 64 * (r.length + 1) for r in refs)
    if jrnl.size < 2 * live:
        return None
    snapshot = [(ref, ref.length) for ref in refs]
    unwritten: set[int] = set()  # released before all their records were written

    def records() -> Iterator[tuple[int, int, bytes, bytes]]:
        for ref, length in snapshot:
            # Created even when released already: the records written meanwhile (appends,
            # then its DROP) name it, and replay would find no conversation to apply them to.
            name = ref.agent.name.encode()
            yield journal.CONV, ref.handle, name, chunk_id(name)
            if store.refs.get(ref.handle) is not ref:
                unwritten.add(ref.handle)
                continue
            for node in conversations.nodes(ref, 0, length):
                if store.refs.get(ref.handle) is not ref:  # released: its nodes may be freed
                    unwritten.add(ref.handle)
                    break
                data = bytes(layout.node_bytes(store, node))
                yield journal.APPEND, ref.handle, data, chunk_id(data)

    # Begun now, with the snapshot: an append served before the first step is copied after
    # it (begun at the first step, it would be in neither).
    rewrite = jrnl.rewrite_steps(records(), keep=lambda forks: not forks & unwritten)

    def logged() -> Generator[None, None, int]:
        saved = yield from rewrite
        log.info("journal rewritten: %d bytes saved", saved)
        return saved

    return logged()


def repair(store: Store) -> tuple[CheckReport, list[str], list[str]]:
    """:meth:`Store.repair`: refcounts set to what the live refs imply, unreachable index
    entries dropped (their space freed); corrupt chunks reported, not fixable here."""
    before = run_check(store, verify_bytes=True)
    fixed: list[str] = []
    unfixable: list[str] = []
    counts = recount(store)
    doubled = [node for node, n in counts.nodes.values() if node.owns_chunk and n > 1]
    for node in doubled:  # claimed twice: the chunk needs an entry of its own (then recount)
        conversations.detach(store, node)
        fixed.append(f"message {short(node.id)}: its chunk given an entry of its own")
    if doubled:
        counts = recount(store)
    for smu, n in counts.smus.values():
        if smu.refs != n:
            fixed.append(f"smu {short(smu.content_id)}: refs {smu.refs} -> {n}")
            smu.refs = n
    for node, n in counts.nodes.values():
        if node.refs != n:
            fixed.append(f"message {short(node.id)}: refs {node.refs} -> {n}")
            node.refs = n
        if node.owns_chunk:
            if store.chunks.get(node.id) is not node:
                store.chunks[node.id] = node
                fixed.append(f"message {short(node.id)}: indexed again")
        elif store.nodes.get((node.parent, node.id)) is not node:
            store.nodes[(node.parent, node.id)] = node
            fixed.append(f"message {short(node.id)}: indexed again")
    for entry, n in counts.chunks.values():
        if entry.__class__ is MessageNode:
            continue  # its refs are its claims, set above (and its chunk held by it alone)
        if entry.refs != n:
            fixed.append(f"chunk {short(entry.id)}: refs {entry.refs} -> {n}")
            entry.refs = n
        if store.chunks.get(entry.id) is not entry:
            store.chunks[entry.id] = entry
            fixed.append(f"chunk {short(entry.id)}: indexed again")
    live_smus = {id(s) for s, _ in counts.smus.values()}
    for cid, smu in list(store.smus.items()):
        if id(smu) not in live_smus:
            del store.smus[cid]
            fixed.append(f"smu {short(cid)}: unreachable, dropped from the index")
    live_nodes = {id(n) for n, _ in counts.nodes.values()}
    for key, node in list(store.nodes.items()):
        if id(node) not in live_nodes:
            del store.nodes[key]
            fixed.append(f"message {short(key[1])}: unreachable, dropped from the index")
    if store.message_count != len(live_nodes):
        fixed.append(f"messages: count {store.message_count} -> {len(live_nodes)}")
        store.message_count = len(live_nodes)
    for cid, entry in list(store.chunks.items()):
        if id(entry) not in counts.chunks:
            del store.chunks[cid]
            store.freed(entry)
            fixed.append(f"chunk {short(cid)}: unreachable, freed")
    for line in before.corrupt:
        unfixable.append(
            f"{line}: its bytes are lost (a conversation's messages come back from the "
            "journal when the daemon restarts)"
        )
    store.epoch += 1
    return before, fixed, unfixable
