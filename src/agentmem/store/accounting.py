"""Statistics from the store's records: totals are running counters, splits are computed.

Computing who shares what for every agent walks every distinct SMU and message once, plus
each agent's own chunk occurrences: O(chunk references) per call. Cheap for conversations; for
very large prompts held by many agents (100 x 40,000 chunks) it takes on the order of a
second, which is why the totals themselves never need it. One agent's split reads only that
agent's records and the reference counts (:func:`_own_split`). ``cheap=True`` skips the walk
(and the chunk-pointer term of the metadata estimate): O(agents + handles + segments), for
callers that ask every second (the daemon's ``agent_stats`` file and metrics).

The walk also comes as steps (:func:`store_stats_steps`): a generator that yields after every
:data:`STEP` records, so the daemon can spread one walk over its loop between requests instead
of holding every agent for it (2.8 s at 100 seed-profile agents). Such a walk reads records
that may change between its steps: it takes the refs, agents and index as they are when it
starts, and a chunk demoted, shared or released meanwhile counts as it is when the walk reaches
it, so the splits mix the two moments (each figure stays one a store could have shown).
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Final

from agentmem.ids import ChunkId
from agentmem.states import AgentState, SMUType, Tier
from agentmem.stats import AgentStats, StoreStats, TieringStats, TypeStats
from agentmem.store.conversations import newest_first
from agentmem.store.records import (
    SHARED_INDEXES,
    SMU,
    Agent,
    ChunkEntry,
    ConversationRef,
    MessageNode,
    Ref,
)
from agentmem.store.steps import run

if TYPE_CHECKING:
    from agentmem.store.store import Store

_SHARED = -1

#: Records a stepwise walk visits between two yields. ~0.1-0.3 ms of walking here (a message
#: node costs ~0.5-1 us in each pass), so a caller's slice ends within that of its deadline.
STEP: Final = 256

#: A walk's steps: ``next()`` runs one, ``StopIteration.value`` is the result.
Steps = Generator[None, None, StoreStats]


def _dict_slot_bytes() -> int:
    """Average bytes a dict spends per entry at scale (index + entry table, amortised growth)."""
    d = {i: None for i in range(1 << 16)}
    return sys.getsizeof(d) // len(d)


def _record_bytes() -> dict[str, int]:
    key = ChunkId(bytes(32))
    slot = _dict_slot_bytes()
    entry = ChunkEntry(key, 0)
    smu = SMU(key, SMUType.BLOB, 0, (entry,))
    node = MessageNode(key, 0, None)
    chunk_tuple = sys.getsizeof((entry,)) - 8  # the tuple without its one pointer
    return {
        # entry + its 32-byte id object + its slot in the chunk index + its offset in its
        # container's ``starts`` (4 bytes; sizes and member indexes are shared int objects)
        "chunk": sys.getsizeof(entry) + sys.getsizeof(key) + slot + 4,
        "smu": sys.getsizeof(smu) + chunk_tuple + slot,
        # a message that is its own chunk's entry: counted as a chunk, plus its parent slot
        "own_node": sys.getsizeof(node) - sys.getsizeof(entry),
        # any other message: the node and its (parent, content id) key in ``Store.nodes``
        # (its id is its chunk's, or for a message of several chunks its own, below)
        "node": sys.getsizeof(node) + sys.getsizeof((None, key)) + slot,
        "node_chunks": sys.getsizeof(key) + chunk_tuple,
        "pointer": 8,
        "int": sys.getsizeof(1 << 20),
        # a distinct size in the table of shared sizes (``Store.intern_size``)
        "size": sys.getsizeof(1 << 20) + slot,
        "ref": sys.getsizeof(Ref) // 8 + 64 + slot,  # slotted object of 4 fields + handle slot
    }


_SIZES: dict[str, int] | None = None


def metadata_bytes(store: Store, *, pointers: bool = True) -> int:
    """Estimated bytes of the store's index records (measured sizes times counts); without
    ``pointers``, leaving out the records' chunk pointers (counting them is O(records))."""
    return run(_metadata_steps(store, pointers=pointers))


def _metadata_steps(store: Store, *, pointers: bool = True) -> Generator[None, None, int]:
    global _SIZES
    if _SIZES is None:
        _SIZES = _record_bytes()
    s = _SIZES
    n_pointers = 0
    several = 0
    n_ints = 0
    if pointers:
        # Lists taken first: the dicts may change between steps (~3 ms for 1.3 million).
        smus = list(store.smus.values())
        for i in range(0, len(smus), STEP):
            n_pointers += sum(len(smu.chunks) for smu in smus[i : i + STEP])
            yield
        del smus
        nodes = list(store.nodes.values())
        for i in range(0, len(nodes), STEP):
            for n in nodes[i : i + STEP]:
                loc: object = n.loc
                if isinstance(loc, tuple):
                    several += 1
                    n_pointers += len(loc)
            yield
        del nodes
        n_pointers += sum(
            len(r.marks) for r in list(store.refs.values()) if isinstance(r, ConversationRef)
        )
        # Member indexes past the shared ones are ints of their own (records._INDEXES).
        entries = list(store.chunks.values())
        for i in range(0, len(entries), STEP * 4):
            n_ints += sum(1 for e in entries[i : i + STEP * 4] if e.at >= SHARED_INDEXES)
            yield
        del entries
    own = store.message_count - len(store.nodes)
    return (
        len(store.chunks) * s["chunk"]
        + len(store.smus) * s["smu"]
        + own * s["own_node"]
        + len(store.nodes) * s["node"]
        + several * s["node_chunks"]
        + len(store.refs) * s["ref"]
        + n_pointers * s["pointer"]
        + n_ints * s["int"]
        + len(store._sizes) * s["size"]
    )


def physical_bytes(store: Store) -> int:
    """Bytes the store holds for content: hot pages touched, warm frames, dictionaries."""
    return (
        store.hot.stats().physical_bytes
        + store.warm.stats().physical_bytes
        + dictionary_bytes(store)
    )


def dictionary_bytes(store: Store) -> int:
    """The dictionaries and what waits to train them (samples, and frames kept as samples
    after their content was freed)."""
    return store.dictionaries.memory_bytes + store.warm.training_bytes


def _owners(
    refs: Sequence[Ref | ConversationRef], owner: dict[ChunkEntry, int]
) -> Generator[None, None, None]:
    """Fill ``owner``: chunk entry -> the one agent id holding it among ``refs``, or _SHARED;
    message nodes are keys too (an own-chunk node is its chunk's entry). Yields every
    :data:`STEP` nodes.

    One dict keyed by the objects themselves, filled in one walk: a conversation's chain is
    walked from its tip up to the first node this agent (or several) already marked, since
    the nodes above it were marked then. Measured on 74,534 messages of 5 seed agents, the
    whole split: 0.078 s and 7 MiB of transient objects, where a dict of holders (a tuple and
    a set each, keyed by ``id()``) took 0.20 s and 29 MiB.
    """
    get = owner.get
    shared = _SHARED
    budget = STEP
    for ref in refs:
        aid = ref.agent.agent_id
        if isinstance(ref, Ref):
            _mark(owner, ref.smu.chunks, aid)
            budget -= len(ref.smu.chunks)
        else:
            for node in newest_first(ref):
                prev = get(node)
                if prev in (aid, shared):
                    break  # marked on an earlier walk, and so is every node above it
                owner[node] = aid if prev is None else shared
                loc: object = node.loc
                if loc.__class__ is tuple or loc.__class__ is ChunkEntry:  # chunks of their own
                    _mark(owner, node.chunks, aid)
                budget -= 1
                if budget <= 0:
                    budget = STEP
                    yield
        if budget <= 0:
            budget = STEP
            yield


def _mark(owner: dict[ChunkEntry, int], entries: Iterable[ChunkEntry], aid: int) -> None:
    """Record that agent ``aid`` holds ``entries``: theirs alone if nobody held them yet."""
    for e in entries:
        prev = owner.get(e)
        if prev is None:
            owner[e] = aid
        elif prev != aid:
            owner[e] = _SHARED


def _refs_by_agent(refs: Iterable[Ref | ConversationRef]) -> dict[int, list[Ref | ConversationRef]]:
    """Every agent's refs, by agent id: one pass over ``refs``."""
    out: dict[int, list[Ref | ConversationRef]] = {}
    for ref in refs:
        out.setdefault(ref.agent.agent_id, []).append(ref)
    return out


def _agent_stats(agent: Agent, split: tuple[int, int, int] | None = None) -> AgentStats:
    """``agent``'s statistics from the totals the store keeps, with ``split`` (unique, shared,
    compressed bytes) when one was computed (else those read None)."""
    unique, shared, compressed = split if split is not None else (None, None, None)
    return AgentStats(
        name=agent.name,
        pid=agent.pid,
        state=agent.state.label,
        importance=agent.importance,
        handles=agent.handles,
        logical_bytes=agent.logical_bytes,
        unique_bytes=unique,
        shared_bytes=shared,
        compressed_bytes=compressed,
        by_type={t.label: agent.by_type[t] for t in SMUType if agent.by_type[t]},
    )


def _split(
    agent: Agent, owner: dict[ChunkEntry, int], refs: Sequence[Ref | ConversationRef]
) -> Generator[None, None, tuple[int, int, int]]:
    """The (unique, shared, compressed) bytes of ``agent``'s ``refs`` by the owners
    :func:`_owners` found; yields every :data:`STEP` holders."""
    unique = shared = compressed = 0
    seen: set[ChunkEntry] = set()
    mine = agent.agent_id
    budget = STEP
    hot = Tier.HOT
    for ref in refs:
        holders: Iterable[SMU | MessageNode] = (
            [ref.smu] if isinstance(ref, Ref) else newest_first(ref)
        )
        for holder in holders:
            for e in holder.chunks:
                if e in seen:
                    continue
                seen.add(e)
                if owner.get(e) == mine:
                    unique += e.size
                else:
                    shared += e.size
                if e.tier is not hot:
                    compressed += e.size
            budget -= 1
            if budget <= 0:
                budget = STEP
                yield
    return unique, shared, compressed


def agent_stats(store: Store, agent: Agent) -> AgentStats:
    """One agent's statistics: the split from the agent's own records (:func:`_own_split`),
    not a walk of the store. O(the store's handles + this agent's chunk references)."""
    return run(agent_stats_steps(store, agent))


def agent_stats_steps(store: Store, agent: Agent) -> Generator[None, None, AgentStats]:
    """:func:`agent_stats` in steps of about :data:`STEP` records (as
    :func:`store_stats_steps`; an agent of 100,000 handles or a 15,000-message history takes
    milliseconds)."""
    every = list(store.refs.values())
    refs: list[Ref | ConversationRef] = []
    for i in range(0, len(every), STEP * 16):
        refs += [r for r in every[i : i + STEP * 16] if r.agent is agent]
        yield
    del every
    split = yield from _own_split(store, refs)
    return _agent_stats(agent, split)


def _own_split(
    store: Store, refs: Sequence[Ref | ConversationRef]
) -> Generator[None, None, tuple[int, int, int]]:
    """The (unique, shared, compressed) bytes of one agent's ``refs``, as :func:`_owners`
    would split them, from the reference counts instead of from every other agent's refs;
    yields every :data:`STEP` records.

    A holder (an SMU or a message node) is the agent's alone when every claim on it comes
    from the agent: an SMU's handles are all its own (published names hold no agent's
    claim); a node's claims (its children and the conversation refs whose tip it is) are
    its own tips and children that are its alone. A chunk is the agent's alone when every
    occurrence counted in its ``refs`` lies in a holder that is the agent's alone, or in an
    SMU that only names hold (no agent's). Measured (50 agents, each a 3,000-message
    conversation and a shared prompt; 150,000 messages): 1.7-2.4 ms against 25-45 ms for the
    store-wide walk, which grows with every other agent's history.
    """
    budget = STEP
    mine: dict[SMU, int] = {}  # the agent's SMUs -> its handles on each
    tips: dict[MessageNode, int] = {}  # tips of the agent's conversations -> its refs there
    for ref in refs:
        if isinstance(ref, Ref):
            mine[ref.smu] = mine.get(ref.smu, 0) + 1
        elif ref.tip is not None:
            tips[ref.tip] = tips.get(ref.tip, 0) + 1
    named: dict[SMU, int] = {}
    for smu in store.names.values():
        named[smu] = named.get(smu, 0) + 1
    yield
    # The agent's message nodes, each once, with how many of its children are among them.
    children: dict[MessageNode, int] = {}
    nodes: list[MessageNode] = []
    seen_nodes: set[MessageNode] = set()
    for tip in tips:
        node: MessageNode | None = tip
        while node is not None and node not in seen_nodes:
            seen_nodes.add(node)
            nodes.append(node)
            parent = node.parent
            if parent is not None:
                children[parent] = children.get(parent, 0) + 1
            node = parent
            budget -= 1
            if budget <= 0:
                budget = STEP
                yield
    # A node with a claim from elsewhere is shared, and so is every node above it.
    shared_nodes: set[MessageNode] = set()
    for node in nodes:
        if node.refs > tips.get(node, 0) + children.get(node, 0):
            up: MessageNode | None = node
            while up is not None and up not in shared_nodes:
                shared_nodes.add(up)
                up = up.parent
        budget -= 1
        if budget <= 0:
            budget = STEP
            yield
    # Occurrences of chunks in holders that are the agent's alone (or no agent's).
    alone: dict[ChunkEntry, int] = {}
    holders: list[tuple[ChunkEntry, ...]] = [
        smu.chunks for smu, n in mine.items() if smu.refs - named.get(smu, 0) == n
    ]
    holders += [smu.chunks for smu, n in named.items() if smu.refs == n]
    holders += [node.chunks for node in nodes if node not in shared_nodes and not node.owns_chunk]
    for chunks in holders:
        for e in chunks:
            alone[e] = alone.get(e, 0) + 1
        budget -= len(chunks)
        if budget <= 0:
            budget = STEP
            yield
    unique = shared = compressed = 0
    seen: set[ChunkEntry] = set()
    hot = Tier.HOT
    every = [smu.chunks for smu in mine] + [node.chunks for node in nodes]
    for held in every:
        for e in held:
            if e in seen:
                continue
            seen.add(e)
            if e.__class__ is MessageNode:  # a message that is its own chunk's entry
                is_alone = e not in shared_nodes
            else:
                is_alone = alone.get(e, 0) == e.refs
            if is_alone:
                unique += e.size
            else:
                shared += e.size
            if e.tier is not hot:
                compressed += e.size
        budget -= len(held)
        if budget <= 0:
            budget = STEP
            yield
    return unique, shared, compressed


def store_stats(store: Store, *, cheap: bool = False) -> StoreStats:
    """The whole store's statistics, with every agent's. ``cheap``: per-agent ``unique``,
    ``shared`` and ``compressed`` bytes are None, and ``metadata_bytes`` counts records only."""
    if cheap:
        agents = sorted(store.agents.values(), key=_name)
        per_agent = tuple(_agent_stats(a) for a in agents)
        return _assemble(store, per_agent, metadata_bytes(store, pointers=False))
    return run(store_stats_steps(store))


def store_stats_steps(store: Store) -> Steps:
    """:func:`store_stats` (not cheap) as steps: each ``next()`` walks about :data:`STEP`
    records; the generator returns the statistics. The store may change between steps (see
    the module's docstring); a released agent is reported as it was when the walk began."""
    refs = list(store.refs.values())
    agents = sorted(store.agents.values(), key=_name)
    owner: dict[ChunkEntry, int] = {}
    yield from _owners(refs, owner)
    by_agent = _refs_by_agent(refs)
    del refs
    splits: list[tuple[int, int, int]] = []
    for a in agents:
        splits.append((yield from _split(a, owner, by_agent.get(a.agent_id, ()))))
    del owner, by_agent
    metadata = yield from _metadata_steps(store)
    per_agent = tuple(_agent_stats(a, sp) for a, sp in zip(agents, splits, strict=True))
    return _assemble(store, per_agent, metadata)


def _name(agent: Agent) -> str:
    return agent.name


def _assemble(store: Store, per_agent: tuple[AgentStats, ...], metadata: int) -> StoreStats:
    """The store-wide figures (running counters) around ``per_agent``."""
    hot = store.hot.stats()
    warm = store.warm.stats()
    logical = sum(a.logical_bytes for a in store.agents.values())
    cold = store.cold.stats() if store.cold is not None else None
    unique = hot.raw_bytes + warm.raw_bytes + (cold.raw_bytes if cold is not None else 0)
    # From the counters the store keeps: O(agents), not O(handles) (24 ms a second for a
    # daemon holding 100,000 handles, in the statistics it publishes every second).
    counts = store.handles_by_type
    sizes = [sum(a.by_type[t] for a in store.agents.values()) for t in range(len(counts))]
    dict_bytes = dictionary_bytes(store)
    return StoreStats(
        agents=len(store.agents),
        handles=len(store.refs),
        logical_bytes=logical,
        unique_bytes=unique,
        physical_bytes=hot.physical_bytes + warm.physical_bytes + dict_bytes,
        dedup_ratio=logical / unique if unique else 1.0,
        compression_ratio=warm.raw_bytes / warm.stored_bytes if warm.stored_bytes else 1.0,
        chunks=len(store.chunks),
        segments=hot.containers,
        messages=store.message_count,
        dictionaries=len(store.dictionaries),
        dictionary_bytes=dict_bytes,
        metadata_bytes=metadata,
        hot=hot,
        warm=warm,
        by_type={
            t.label: TypeStats(smu_type=t.label, handles=counts[t], logical_bytes=sizes[t])
            for t in SMUType
        },
        per_agent=per_agent,
        cold=cold,
        tiering=tiering_stats(store),
    )


def tiering_stats(store: Store) -> TieringStats:
    cfg = store.config
    journal = store.journal
    states = [s for s in AgentState]
    clocks = [store.warm.codec] + ([store.cold.codec] if store.cold is not None else [])
    sync = journal.sync_seconds if journal is not None else 0.0
    return TieringStats(
        hot_budget_bytes=cfg.hot_budget_bytes,
        warm_budget_bytes=cfg.warm_budget_bytes,
        promotions={s.label: store.promotions[s] for s in states},
        promoted_bytes={s.label: store.promoted_bytes[s] for s in states},
        demoted_bytes={t.label: store.demoted_bytes[t] for t in (Tier.WARM, Tier.COLD)},
        compress_cpu_seconds=round(sum(c.encode_seconds for c in clocks), 6),
        decode_cpu_seconds=round(sum(c.decode_seconds for c in clocks), 6),
        journal_sync_cpu_seconds=round(sync, 6),
        reinstated_bytes=store.warm.reinstated_bytes,
        clean_copy_bytes=store.warm.shadow_bytes,
        durability="off" if journal is None else ("strict" if journal.durable_sync else "relaxed"),
        journal_bytes=journal.size if journal is not None else 0,
        journal_syncs=journal.syncs if journal is not None else 0,
        restored_conversations=store.restored.conversations,
        orphan_agents=sum(1 for a in store.agents.values() if a.orphaned is not None),
        far_memory=store.far_memory,
        errors=tuple(store.tier_errors),
    )
