"""The store: one domain's content-addressed, tiered chunk store and its API.

This is the library behind the daemon and the in-process mode. It speaks the vocabulary of
the original design: ``alloc_smu``, ``share_content``, ``mark_hot``, ``get_stats``.

Thread-safety: a ``Store`` is not thread-safe. The daemon serves it from one event loop; an
in-process user with threads must hold a lock around calls.

Buffer ownership: data passed in is copied (into a segment) before the call returns; views
returned by ``read``/``views``/``messages`` are read-only and stay valid as long as the caller
keeps them, even after the handle is released or the content moves tier.
"""

from __future__ import annotations

import itertools
import os
import time
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Literal, overload

from agentmem import constants
from agentmem.chunking import Chunker, default_chunker
from agentmem.codec import DictionarySet
from agentmem.config import Config
from agentmem.errors import (
    AgentExists,
    DiskFull,
    InvalidArgument,
    QuotaExceeded,
    StoreClosed,
    TooLarge,
    UnknownAgent,
    UnknownHandle,
    WrongType,
)
from agentmem.hashing import chunk_id
from agentmem.ids import ChunkId, Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.stats import AgentStats, StoreStats
from agentmem.store import accounting, conversations, layout, numa, recovery, steps, tiering
from agentmem.store.check import CheckReport, run_check
from agentmem.store.cold import ColdGroup, ColdTier
from agentmem.store.hot import SHARED, HotTier, tier_level
from agentmem.store.journal import Journal
from agentmem.store.numa import FarMemory
from agentmem.store.policy import Candidate, EvictionPolicy, LRUPolicy, SemanticPolicy
from agentmem.store.records import (
    SMU,
    Agent,
    ChunkEntry,
    ConversationRef,
    MessageNode,
    Ref,
    WarmGroup,
)
from agentmem.store.segments import Segment
from agentmem.store.warm import WarmTier

Buffer = bytes | bytearray | memoryview

#: Plain bytes one step of :meth:`Store.promotion_steps` brings back: ~1 ms of placing here
#: (its warm group is decoded once, by the step that reaches it first, and the decoded groups'
#: cache keeps it for the next steps). A 1 MiB step held the loop ~4-5 ms.
PROMOTE_STEP_BYTES = 256 << 10
AnyRef = Ref | ConversationRef

_CONVERSATION = SMUType.CONVERSATION
_HOT = Tier.HOT
_WHOLE_MAX = constants.MESSAGE_WHOLE_MAX
#: Newest messages of a conversation that stay where they are when its older ones are demoted
#: under pressure (the policy's "older messages before recent ones").
RECENT_MESSAGES = 8


def _as_buffer(data: object, what: str) -> Buffer:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    raise InvalidArgument(
        f"{what} must be bytes, bytearray, memoryview or str, not {type(data).__name__}"
    )


_level = tier_level  # far segments count as warm (``store/hot.py``)


def _history(ref: ConversationRef, keep: int = 0, own_only: bool = False) -> list[MessageNode]:
    """The ref's messages oldest first, without the newest ``keep``; with ``own_only``, only
    those after the last one with more than one claim (two continuations, or two handles at
    one tip): a fork point, which and whose history other conversations hold too."""
    out: list[MessageNode] = []
    for node in conversations.newest_first(ref):
        if own_only and node.refs > 1:
            break
        out.append(node)
    out.reverse()
    return out[: len(out) - keep] if keep else out


class Slices:
    """Pieces of one buffer by offsets, each a ``memoryview`` made when it is read.

    ``ingest_chunks`` hands the new chunks of a large SMU to the hot tier this way: a 16 MiB
    prompt's 6,663 chunks held as views at once were ~1.2 MiB of small objects between the
    index entries allocated with them, and the daemon kept the emptied pools (20 readers of
    a 16 MiB prompt cost 1.27x one copy, 1.20x with the views made one at a time).
    """

    __slots__ = ("_ends", "_starts", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._starts = array("Q")
        self._ends = array("Q")

    def add(self, start: int, end: int) -> None:
        self._starts.append(start)
        self._ends.append(end)

    def only(self, indexes: Iterable[int]) -> Slices:
        """The pieces at ``indexes``, in that order."""
        out = Slices(self._view)
        for i in indexes:
            out.add(self._starts[i], self._ends[i])
        return out

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[memoryview]:
        view = self._view
        for start, end in zip(self._starts, self._ends, strict=True):
            yield view[start:end]

    def __contains__(self, item: object) -> bool:
        return any(piece == item for piece in self)


class Store:
    """A content-addressed store of semantic memory units for one domain."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        chunker: Chunker | None = None,
        clock: Callable[[], float] = time.monotonic,
        state_dir: str | None = None,
        far_memory: FarMemory | Literal["detect"] | None = "detect",
    ) -> None:
        """``state_dir``: where the cold tier's packs and the conversation journal live; with
        one, conversations in it from an earlier run are restored (their agents wait, as
        orphans, for a client to reconnect under their name). Without one (the default for a
        library), nothing goes to disk: there is no cold tier and no durability.

        ``far_memory``: where demoted content goes uncompressed before it is compressed, when
        the machine has a far-memory NUMA node; ``"detect"`` looks in ``/sys`` (the usual
        machine has none: the far tier is then off), None turns it off."""
        self.config = config if config is not None else Config()
        #: Seconds, monotonic: when handles were last used (tests pass a fake clock).
        self.clock = clock
        self.chunker: Chunker = chunker if chunker is not None else default_chunker()
        self._threshold = self.chunker.threshold
        self.dictionaries = DictionarySet(
            train_bytes=self.config.dict_train_bytes, dict_size=self.config.dict_size
        )
        if far_memory == "detect":
            topology = numa.read_topology()
            far_memory = FarMemory.detect()
            #: One line for ``stats``: the far node in use, or why there is none.
            self.far_memory = numa.describe(topology)
        else:
            self.far_memory = (
                "far memory: off (turned off)"
                if far_memory is None
                else f"far memory: node {far_memory.node}"
            )
        self.hot = HotTier(self.config.segment_bytes, far_memory)
        self.warm = WarmTier(
            self.dictionaries,
            level=self.config.zstd_level,
            levels={SMUType.CONVERSATION: self.config.conversation_zstd_level},
            verify=self.config.verify_frames,
            group_bytes=self.config.warm_group_bytes,
        )
        self.policy: EvictionPolicy = LRUPolicy() if self.config.lru_policy else SemanticPolicy()
        self.state_dir = state_dir
        self.cold: ColdTier | None = None
        if state_dir is not None:
            self.cold = ColdTier(
                os.path.join(state_dir, "packs"),
                self.dictionaries,
                level=self.config.conversation_zstd_level,
                group_bytes=self.config.warm_group_bytes,
                verify=self.config.verify_frames,
            )
        #: The conversation journal (None: no durability); set once restored.
        self.journal: Journal | None = None
        #: Promotions (reads of content not hot) by the reading agent's state, and their bytes.
        self.promotions = [0] * (max(AgentState) + 1)
        self.promoted_bytes = [0] * (max(AgentState) + 1)
        #: Plain bytes demoted, by target tier.
        self.demoted_bytes = [0] * (max(Tier) + 1)
        #: Handles the age rules have already taken down, with ``touched`` as it was then
        #: (``tiering.demote_idle``): unused since, they have nothing left to move.
        self.aged: dict[int, float] = {}
        #: Whether the last age pass stopped at its deadline with handles still due.
        self.idle_backlog = False
        #: Idle handles part-way down (``tiering.demote_idle``): handle -> (its ``touched``
        #: when the demotion began, the steps left).
        self.demoting: dict[int, tuple[float, Generator[int, None, None]]] = {}
        #: The journal's rewrite while it goes on, a step a time (``tiering.maintain``).
        self.journal_rewrite: Generator[None, None, int] | None = None
        #: A hot segment compaction while it goes on, a step a time (the daemon's
        #: ``maintenance.tick``); :meth:`compact` finishes it.
        self.compaction: Generator[None, None, int] | None = None
        #: For each conversation in ``aged``: the claims of its own messages on hot chunks other
        #: conversations hold too, as they were then (what ``demote_idle`` weighs once every
        #: holder is due).
        self.aged_shared: dict[int, list[ChunkEntry]] = {}
        #: The last errors of moves between tiers (disk full, unreadable packs), newest last.
        self.tier_errors: list[str] = []
        self.chunks: dict[ChunkId, ChunkEntry] = {}
        self.smus: dict[ChunkId, SMU] = {}
        #: Message nodes that are not their own chunk's entry, by (parent, content id)
        #: (``records.MessageNode``); the others are found in ``chunks``.
        self.nodes: dict[tuple[MessageNode | None, ChunkId], MessageNode] = {}
        #: Live message nodes of either form.
        self.message_count = 0
        self.refs: dict[int, AnyRef] = {}
        #: Live handles per SMU type, indexed by ``SMUType`` value (kept as handles come and
        #: go, so statistics need not walk every handle).
        self.handles_by_type = [0] * (max(SMUType) + 1)
        self.agents: dict[str, Agent] = {}
        #: Published names -> SMU; each holds one ref on its SMU.
        self.names: dict[str, SMU] = {}
        #: Pin counts of chunks held by ``mark_hot`` refs.
        self.pins: dict[ChunkId, int] = {}
        # Handles start at a random 40-bit offset: a handle kept across a daemon restart must
        # not silently name whatever the new daemon numbered the same (it gets UnknownHandle).
        # os.urandom, not ``secrets``: that module loads OpenSSL's libcrypto (~4 MiB of PSS).
        start = int.from_bytes(os.urandom(5), "little")
        self._handles = itertools.count(start + 1)  # shared with conversations
        self._agent_ids = itertools.count(1)
        #: One int object per distinct chunk size, shared by every entry of that size: an int
        #: above 256 is a 28-byte object, ~10 % of a chunk's metadata budget of 256 bytes.
        #: Never pruned, so it holds only sizes up to ``MESSAGE_WHOLE_MAX`` (``intern_size``).
        self._sizes: dict[int, int] = {}
        #: Bumped whenever a chunk changes location; invalidates cached extents.
        self.epoch = 0
        self._closed = False
        #: True while restoring with packs scanned: new chunks may be found in them.
        self._claimable = False
        self.restored = recovery.Restored()
        if state_dir is not None:
            journal = Journal(
                os.path.join(state_dir, "journal.amj"), durable_sync=self.config.durable_sync
            )
            #: What restoring found (records replayed, conversations and agents restored).
            self.restored = recovery.restore(self, journal)
            self.journal = journal

    # --- agents ----------------------------------------------------------------------------

    def register_agent(
        self,
        name: str,
        *,
        pid: int | None = None,
        state: AgentState | str = AgentState.ACTIVE,
        importance: int = 0,
    ) -> Agent:
        """Register an agent; names are unique in the store. Raises ``AgentExists``."""
        self._check_open()
        if not isinstance(name, str) or not name or len(name.encode()) > constants.MAX_AGENT_NAME:
            raise InvalidArgument(
                f"agent name must be a non-empty str of at most {constants.MAX_AGENT_NAME} bytes"
            )
        if not isinstance(importance, int) or isinstance(importance, bool):
            raise InvalidArgument("importance must be an int")
        st = AgentState.parse(state)
        if name in self.agents:
            raise AgentExists(f"an agent named {name!r} is already registered")
        agent = Agent(
            next(self._agent_ids), name, os.getpid() if pid is None else pid, st, importance
        )
        self.agents[name] = agent
        return agent

    def agent(self, name: str) -> Agent:
        """The registered agent called ``name``; raises ``UnknownAgent``."""
        try:
            return self.agents[name]
        except (KeyError, TypeError):
            raise UnknownAgent(f"no agent named {name!r}") from None

    def _resolve(self, agent: Agent | str) -> Agent:
        if isinstance(agent, Agent):
            if self.agents.get(agent.name) is not agent:
                raise UnknownAgent(f"agent {agent.name!r} is not registered in this store")
            return agent
        if isinstance(agent, str):
            return self.agent(agent)
        raise InvalidArgument(f"agent must be an Agent or a name, not {type(agent).__name__}")

    def set_state(
        self,
        agent: Agent | str,
        state: AgentState | str | None = None,
        importance: int | None = None,
    ) -> None:
        """Change an agent's state and/or importance."""
        a = self._resolve(agent)
        if state is not None:
            a.state = AgentState.parse(state)
        if importance is not None:
            if not isinstance(importance, int) or isinstance(importance, bool):
                raise InvalidArgument("importance must be an int")
            a.importance = importance

    def unregister_agent(self, agent: Agent | str) -> int:
        """Release every handle the agent holds and forget it; returns handles released."""
        a = self._resolve(agent)
        mine = [h for h, r in self.refs.items() if r.agent is a]
        for h in mine:
            self.release(Handle(h))
        del self.agents[a.name]
        return len(mine)

    # --- named content ---------------------------------------------------------------------

    def publish(self, handle: Handle, name: str) -> None:
        """Make the handle's SMU openable by ``name`` by any agent of this domain.

        Explicit publishing is how an orchestrator hands a system prompt or tool catalogue to
        agents it has not started yet: each opens it by name as it starts, with no round trip
        to whoever allocated it. The store holds a ref for the name until :meth:`unpublish`.
        Raises ``WrongType`` for a conversation, ``InvalidArgument`` for a bad name or one that
        names other content already, ``QuotaExceeded`` past ``MAX_PUBLISHED_NAMES``.
        """
        ref = self._ref(handle, touch=False)
        if not isinstance(ref, Ref):
            raise WrongType("only an SMU can be published, not a conversation")
        if not isinstance(name, str) or not name or len(name.encode()) > constants.MAX_AGENT_NAME:
            raise InvalidArgument(
                f"a published name is a non-empty str of at most {constants.MAX_AGENT_NAME} bytes"
            )
        current = self.names.get(name)
        if current is ref.smu:
            return
        if current is not None:
            raise InvalidArgument(f"the name {name!r} is published already; unpublish it first")
        if len(self.names) >= constants.MAX_PUBLISHED_NAMES:
            raise QuotaExceeded(f"a domain publishes at most {constants.MAX_PUBLISHED_NAMES} names")
        ref.smu.refs += 1
        self.names[name] = ref.smu

    def unpublish(self, name: str) -> None:
        """Forget a published name (agents that opened it keep their handles)."""
        smu = self.names.pop(name, None) if isinstance(name, str) else None
        if smu is None:
            raise UnknownHandle(f"nothing is published as {name!r}")
        self._unref_smu(smu)

    def open(self, name: str, agent: Agent | str) -> Handle:
        """A new handle for ``agent`` on the content published as ``name``."""
        a = self._resolve(agent)
        smu = self.names.get(name) if isinstance(name, str) else None
        if smu is None:
            raise UnknownHandle(f"nothing is published as {name!r}")
        self._check_quota(a, smu.size)
        return self.new_ref(a, smu)

    # --- the four calls --------------------------------------------------------------------

    def alloc_smu(self, smu_type: SMUType | str, data: object, agent: Agent | str) -> Handle:
        """Store ``data`` as an SMU of ``smu_type`` for ``agent``; return a new handle.

        Identical content (in this store's domain) is stored once. For ``conversation``, ``data``
        is an iterable of messages (each bytes or str), possibly empty.
        Raises ``InvalidArgument``, ``TooLarge``, ``QuotaExceeded``, ``UnknownAgent``.
        """
        self._check_open()
        if smu_type.__class__ is not SMUType:
            smu_type = SMUType.parse(smu_type)
        a = (
            agent
            if agent.__class__ is Agent and self.agents.get(agent.name) is agent
            else self._resolve(agent)
        )
        if smu_type is _CONVERSATION:
            return self._new_conversation(a, data)
        buf = _as_buffer(data, "data")
        size = len(buf)
        if size > self.config.max_smu_bytes:
            raise TooLarge(
                f"content of {size} bytes exceeds the {self.config.max_smu_bytes}-byte limit"
            )
        self._check_quota(a, size)
        cid = chunk_id(buf)
        smu = self.smus.get(cid)
        if smu is None or smu.smu_type is not smu_type:
            smu = self._ingest_smu(cid, smu_type, buf, a)
        h = self.new_ref(a, smu)
        budget = self.config.hot_budget_bytes
        if budget and self.hot.live_bytes > budget:  # content larger than the room made
            tiering.enforce_budget(self)
        return h

    def share_content(self, handle: Handle, target_agent: Agent | str) -> Handle:
        """Give ``target_agent`` its own handle on the same content (no copy); return it."""
        ref = self._ref(handle, touch=False)
        target = (
            target_agent
            if target_agent.__class__ is Agent
            and self.agents.get(target_agent.name) is target_agent
            else self._resolve(target_agent)
        )
        if ref.__class__ is Ref:
            self._check_quota(target, ref.size)
            return self.new_ref(target, ref.smu)
        assert isinstance(ref, ConversationRef)
        self._check_quota(target, ref.size)
        return conversations.fork(self, ref, target)

    def mark_hot(self, handle: Handle, hot: bool = True) -> None:
        """Pin (``hot=True``) the content in the hot tier, promoting it now if it is not hot;
        or unpin it. Pins are counted per chunk; idempotent per handle."""
        ref = self._ref(handle)
        if bool(hot) == ref.pinned:
            return
        ref.pinned = bool(hot)
        entries = list(self._entries_of(ref))
        pins = self.pins
        if hot:
            for e in entries:
                pins[e.id] = pins.get(e.id, 0) + 1
            self._promote(entries, ref.smu_type, ref, force=True)
            if self.warm.clean:  # pinned content is not demoted: no clean copy to keep
                for e in entries:
                    self.warm.drop_clean(e)
        else:
            self._unpin(entries)

    def get_stats(
        self, agent: Agent | str | None = None, *, cheap: bool = False
    ) -> StoreStats | AgentStats:
        """Statistics of the whole store, or of one agent when ``agent`` is given.

        ``cheap`` (whole store only) skips the walk over every chunk reference that splits each
        agent's bytes into unique, shared and compressed (those read None): O(agents + handles).
        """
        self._check_open()
        if agent is not None:
            return accounting.agent_stats(self, self._resolve(agent))
        return accounting.store_stats(self, cheap=cheap)

    @overload
    def get_stats_steps(self) -> accounting.Steps: ...

    @overload
    def get_stats_steps(self, agent: Agent | str) -> Generator[None, None, AgentStats]: ...

    def get_stats_steps(
        self, agent: Agent | str | None = None
    ) -> accounting.Steps | Generator[None, None, AgentStats]:
        """:meth:`get_stats` as a walk in steps: each ``next()`` visits a few hundred records
        (``accounting.STEP``), and the generator returns the statistics. The store may be used
        between steps; what changes meanwhile counts as it is when the walk reaches it
        (``store/accounting.py``). ``UnknownAgent`` is raised here, not by a step."""
        self._check_open()
        if agent is not None:
            return accounting.agent_stats_steps(self, self._resolve(agent))
        return accounting.store_stats_steps(self)

    # --- content ---------------------------------------------------------------------------

    def read(self, handle: Handle) -> memoryview:
        """The SMU's content. Zero-copy when it is hot and contiguous (one extent); otherwise
        the pieces are joined into a new buffer. Conversations: use ``messages``."""
        ref = self._ref(handle)
        if ref.__class__ is ConversationRef:
            raise WrongType("read() takes an SMU handle; use messages() for a conversation")
        smu = ref.smu  # type: ignore[union-attr]
        extents = layout.extents_of(self, smu)
        if extents is None:
            self._promote(list(smu.chunks), smu.smu_type, ref)
            extents = layout.extents_of(self, smu)
        if extents is not None and len(extents) == 1:
            seg, off, n = extents[0]
            return seg.view(off, n)
        return memoryview(b"".join(layout.pieces(self, smu)))

    def views(self, handle: Handle) -> list[memoryview]:
        """The content as a list of pieces in order, zero-copy for hot chunks (merged where
        adjacent). Suitable for ``socket.sendmsg`` without joining."""
        ref = self._ref(handle)
        if ref.__class__ is ConversationRef:
            raise WrongType("views() takes an SMU handle; use messages() for a conversation")
        smu = ref.smu  # type: ignore[union-attr]
        if layout.extents_of(self, smu) is None:
            self._promote(list(smu.chunks), smu.smu_type, ref)
        return layout.pieces(self, smu)

    def extents(
        self, handle: Handle, *, promote: bool = True
    ) -> tuple[tuple[Segment, int, int], ...]:
        """Where an SMU's bytes lie in hot segments: (segment, offset, length) runs in order.

        Content not entirely hot is promoted first (``promote``); an empty tuple when it is
        not (``promote=False``, or it does not fit in the hot budget). For the daemon, which
        shares segments by fd.
        """
        ref = self._ref(handle)
        if not isinstance(ref, Ref):
            raise WrongType("extents() takes an SMU handle, not a conversation")
        smu = ref.smu
        ext = layout.extents_of(self, smu)
        if ext is None:
            if not promote or not self._promote(list(smu.chunks), smu.smu_type, ref):
                return ()
            ext = layout.extents_of(self, smu)
            assert ext is not None  # promoted: every chunk is hot now
        return ext

    def size(self, handle: Handle) -> int:
        """Content size in bytes (for a conversation: the sum of its messages)."""
        return self._ref(handle, touch=False).size

    def smu_type(self, handle: Handle) -> SMUType:
        """The handle's SMU type."""
        return self._ref(handle, touch=False).smu_type

    def release(self, handle: Handle) -> None:
        """Drop the handle; content is freed when its last ref goes. Raises ``UnknownHandle``."""
        ref = self._ref(handle, touch=False)
        del self.refs[handle]
        # What this handle shared may now be another handle's own, demotable where it was
        # not: the age pass looks at every due handle again (once, not every second).
        self.aged.clear()
        self.aged_shared.clear()
        a = ref.agent
        a.handles -= 1
        self.handles_by_type[ref.smu_type] -= 1
        a.logical_bytes -= ref.size
        a.by_type[ref.smu_type] -= ref.size
        if ref.pinned:
            self._unpin(list(self._entries_of(ref)))
        if ref.__class__ is ConversationRef:
            if self.journal is not None:
                self.journal.drop(handle)
            if ref.tip is not None:
                conversations.unref_node(self, ref.tip)
            self.hot.disown(handle)  # nobody maps its segments again
        else:
            self._unref_smu(ref.smu)  # type: ignore[union-attr]

    def compact(self, *, max_live_ratio: float = 0.5) -> int:
        """Copy the live chunks of sparse hot segments into fresh ones; return bytes reclaimed.

        A segment whose live bytes are at most ``max_live_ratio`` of what was appended to it
        (freed chunks leave holes; tmpfs pages stay allocated) has its live chunks re-placed,
        in their old order so extents stay contiguous, and is retired once empty. Views that
        callers hold stay valid: they keep the old mapping alive until they are released.
        O(chunks) per call. A compaction :meth:`compact_steps` has in progress
        (:attr:`compaction`) is finished instead.
        """
        self._check_open()
        running, self.compaction = self.compaction, None
        if running is not None:
            return steps.run(running)
        started = layout.compaction(self, max_live_ratio)
        return 0 if started is None else steps.run(started)

    def compact_steps(self, *, max_live_ratio: float = 0.5) -> Generator[None, None, int] | None:
        """:meth:`compact` in steps of a few milliseconds (``layout.compaction``), for a caller
        that serves requests between them and keeps the generator in :attr:`compaction`;
        None when no segment is sparse. The daemon runs it when freed bytes pile up."""
        self._check_open()
        return layout.compaction(self, max_live_ratio)

    def candidates(
        self, tier: Tier = Tier.HOT, refs: Iterable[AnyRef] | None = None
    ) -> list[Candidate]:
        """Every unpinned handle (of ``refs``: default all) with content in ``tier`` (hot or
        warm), with what a policy weighs: O(refs + their messages). Reading them does not use
        the handles.

        A conversation longer than ``RECENT_MESSAGES`` is two candidates: its older messages
        (``keep=RECENT_MESSAGES``) and its recent ones (``recent=True``), so a policy can take
        the old part of an active agent's conversation before anything recent. A conversation's
        bytes are its own chunks only: a chunk other content holds too (a system message or an
        empty tool output every conversation repeats) is not its to demote (see ``demote``'s
        ``own_only``): demoting it for one idle agent would cost every active reader a promotion.
        """
        out: list[Candidate] = []
        for ref in self.refs.values() if refs is None else refs:
            if ref.pinned:
                continue
            a = ref.agent
            if ref.__class__ is Ref:
                smu = ref.smu
                nbytes = sum(e.size for e in smu.chunks if _level(e.loc) is tier)
                if nbytes:
                    out.append(
                        Candidate(
                            ref.handle,
                            nbytes,
                            a.state,
                            a.importance,
                            ref.touched,
                            ref.smu_type,
                            smu.refs,
                            False,
                        )
                    )
                continue
            length = ref.length  # type: ignore[union-attr]
            split = length - RECENT_MESSAGES if length > RECENT_MESSAGES else 0
            old = recent = 0
            i = length
            for node in conversations.newest_first(ref):  # type: ignore[arg-type]
                i -= 1
                if node.refs > 1:  # a fork point: it and its history others continue too
                    break
                loc: object = node.loc  # records.MessageNode: its container, entry or entries
                if isinstance(loc, tuple):
                    nbytes = sum(e.size for e in loc if e.refs == 1 and _level(e.loc) is tier)
                else:
                    one = loc if isinstance(loc, ChunkEntry) else node
                    if one.refs != 1 or _level(one.loc) is not tier:
                        continue
                    nbytes = one.size
                if i < split:
                    old += nbytes
                else:
                    recent += nbytes
            if old:
                out.append(
                    Candidate(
                        ref.handle,
                        old,
                        a.state,
                        a.importance,
                        ref.touched,
                        _CONVERSATION,
                        1,
                        False,
                        RECENT_MESSAGES,
                    )
                )
            if recent:
                out.append(
                    Candidate(
                        ref.handle,
                        recent,
                        a.state,
                        a.importance,
                        ref.touched,
                        _CONVERSATION,
                        1,
                        False,
                        0,
                        bool(split),
                    )
                )
        return out

    def demote(
        self, handle: Handle, *, keep: int = 0, to: Tier = Tier.WARM, own_only: bool = False
    ) -> int:
        """Move the handle's unpinned chunks down to ``to`` (warm: hot ones; cold: hot and warm
        ones); return plain bytes moved. ``keep``: a conversation's newest ``keep`` messages
        stay. ``own_only``: leave chunks that other content holds too (the policy's moves do,
        for conversations). Cold needs a state directory (``InvalidArgument`` without); a full
        disk raises ``DiskFull`` and moves nothing."""
        ref = self._ref(handle, touch=False)
        entries = self.demotable(ref, keep=keep, to=to, own_only=own_only)
        if not entries:
            return 0
        moved = self.demote_chunks(entries, ref.smu_type, to)
        if not keep and ref.smu_type is SMUType.CONVERSATION:
            # The whole conversation went down: its open segment holds at most chunks other
            # content shares now; closed, compaction may take it (25 idle seed-profile agents
            # left 48 MB of holes in open segments otherwise).
            self.hot.close_owned(handle)
        return moved

    def demotable(
        self, ref: AnyRef, *, keep: int = 0, to: Tier = Tier.WARM, own_only: bool = False
    ) -> list[ChunkEntry]:
        """The chunks :meth:`demote` would move for ``ref`` (distinct, unpinned, above ``to``),
        in the ref's order (a conversation's oldest first). Raises ``InvalidArgument`` for a
        ``to`` the store cannot move to."""
        if to is Tier.COLD and self.cold is None:
            raise InvalidArgument("there is no cold tier: the store has no state directory")
        if to is Tier.HOT:
            raise InvalidArgument("demote moves content to the warm or cold tier")
        pins = self.pins
        seen: set[int] = set()
        entries: list[ChunkEntry] = []
        for e in self._entries_of(ref, keep, own_only=own_only):
            if own_only and e.refs > 1:
                continue
            if _level(e.loc) < to and e.id not in pins and id(e) not in seen:
                seen.add(id(e))
                entries.append(e)
        return entries

    def demote_chunks(
        self, entries: list[ChunkEntry], smu_type: SMUType, to: Tier = Tier.WARM
    ) -> int:
        """Move ``entries`` (distinct, unpinned, above ``to``) down to ``to`` as content of
        ``smu_type``; plain bytes moved. For :meth:`demote`, and for the age pass's chunks that
        several conversations hold, all of them due (``tiering.demote_idle``)."""
        olds = [e.loc for e in entries]
        warm = self.warm
        try:
            if to is Tier.WARM and self.hot.far is not None:
                # Far memory first: still uncompressed and mapped, out of near RAM.
                self.hot.put(entries, [self._load(e) for e in entries], smu_type, far=True)
            elif to is Tier.WARM:
                # What is unchanged since its promotion goes back into its frame uncompressed.
                rest = warm.reinstate(entries)
                if rest:
                    warm.put(rest, [self._load(e) for e in rest], smu_type)
            else:
                assert self.cold is not None
                self.cold.put(entries, [self._load(e) for e in entries], smu_type)
        finally:  # on DiskFull, the groups written before it count as moved
            moved = 0
            for e, old in zip(entries, olds, strict=True):
                if e.loc is not old:
                    self._forget(old, e.size)
                    moved += e.size
                    if warm.clean:  # in a new frame, far or cold now: its clean copy goes
                        warm.drop_clean(e)
            self.epoch += 1
            self.demoted_bytes[to] += moved
        return moved

    # --- conversations ---------------------------------------------------------------------

    def append(self, handle: Handle, message: object) -> Handle:
        """Append one message (bytes or str) to a conversation; the handle now refers to the
        longer conversation and is returned. Raises ``WrongType`` for other SMU types."""
        ref = self._conversation(handle)
        conversations.append(self, ref, _as_buffer(message, "message"))
        return handle

    def extend(self, handle: Handle, messages: Iterable[object]) -> Handle:
        """Append several messages in order. Their journal records are written together at
        the end; if that fails (``DiskFull``), none of them is stored. A message refused on its
        own (too large, over quota) raises after the ones before it were stored."""
        ref = self._conversation(handle)
        journal = self.journal
        if journal is None:
            for m in messages:
                conversations.append(self, ref, _as_buffer(m, "message"))
            return handle
        appended: list[tuple[MessageNode, MessageNode | None]] = []
        try:
            for m in messages:
                parent = ref.tip
                node = conversations.append(self, ref, _as_buffer(m, "message"), journal_later=True)
                appended.append((node, parent))
        finally:
            try:
                journal.flush()
            except DiskFull:
                conversations.undo_appends(self, ref, appended)
                raise
        return handle

    def fork(self, handle: Handle) -> Handle:
        """A new handle of the same agent on the same history; appends to either diverge."""
        ref = self._conversation(handle)
        return conversations.fork(self, ref, ref.agent)

    def sync(self) -> bool:
        """Make every journaled change durable now (strict mode does so before each reply;
        the daemon calls this once per batch of requests). True if it wrote anything."""
        return self.journal.sync() if self.journal is not None else False

    def maintain(self) -> dict[str, int]:
        """One pass of the age- and budget-driven moves, orphan expiry and disk compaction
        (``store/tiering.py``); the daemon calls it once a second."""
        self._check_open()
        return tiering.maintain(self)

    def compact_journal(self) -> int:
        """Rewrite the journal as the live conversations when it has grown past twice their
        size (and ``Config.journal_rewrite_min_bytes``); returns bytes saved. A rewrite the
        maintenance passes have in progress is finished instead (one new file at a time)."""
        rewrite, self.journal_rewrite = self.journal_rewrite, None
        if rewrite is not None:
            return steps.run(rewrite)
        return recovery.compact_journal(self)

    def compact_journal_steps(self) -> Generator[None, None, int] | None:
        """:meth:`compact_journal` in steps, for a caller that serves requests between them
        (``recovery.journal_compaction``); None when the journal is not due."""
        return recovery.journal_compaction(self)

    def messages(self, handle: Handle, start: int = 0, stop: int | None = None) -> list[memoryview]:
        """Messages ``start:stop`` (slice semantics, negative indices allowed)."""
        ref = self._conversation(handle)
        if not isinstance(start, int) or not (stop is None or isinstance(stop, int)):
            raise InvalidArgument("start and stop must be ints")
        nodes = conversations.nodes(ref, start, stop)
        cold = [e for node in nodes for e in node.chunks if e.loc.tier is not _HOT]
        if cold:
            self._promote(cold, _CONVERSATION, ref)
        return [layout.node_bytes(self, node) for node in nodes]

    def message_extents(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> layout.MessageExtents:
        """Messages ``start:stop`` (as :meth:`messages`) as extents where they may be mapped.

        Returns ``MessageExtents(sizes, pieces)``: each message's size, and in order, pieces
        that are either an extent ``(segment, offset, length)`` of a segment of this handle's
        own (:meth:`may_map` is True for it; consecutive messages there are one extent) or
        the bytes of one message that is not (a read-only memoryview, as :meth:`messages`
        returns). Read exactly as :meth:`messages` reads (demoted messages promoted, counted
        as the reader's promotions, into this handle's segment, so they are extents from now
        on; served decoded when the hot budget has no room). For the daemon, which passes a
        segment's fd once and then answers with extents: a 30 MB history is then a few dozen
        extents a turn instead of a 30 MB copy.
        """
        return steps.run(self.message_extents_steps(handle, start, stop))

    def message_extents_steps(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> Generator[None, None, layout.MessageExtents]:
        """:meth:`message_extents` with the promotion of demoted messages in steps (as
        :meth:`promotion_steps`), the messages listed once: a range all hot ends at the first
        ``next()``. Raises as :meth:`messages`, at the first ``next()``."""
        ref = self._conversation(handle)
        if not isinstance(start, int) or not (stop is None or isinstance(stop, int)):
            raise InvalidArgument("start and stop must be ints")
        nodes = conversations.nodes(ref, start, stop)
        cold = layout.not_hot(nodes)  # as messages() finds them: 0.3 ms, not 3.5, for 15,000
        if cold:
            yield from self._promotion(ref, cold)
        return layout.message_extents(self, ref.handle, nodes)

    def promotion_steps(
        self, handle: Handle, start: int = 0, stop: int | None = None
    ) -> Generator[None, None, None] | None:
        """What :meth:`messages` or :meth:`message_extents` of ``start:stop`` would promote,
        as steps of :data:`PROMOTE_STEP_BYTES` (a 30 MB history is ~75 ms of decoding and
        placing), or None when those messages are all hot. Each step promotes its
        chunks as :meth:`message_extents` does (into the handle's own segment, after the
        last step's: the messages stay contiguous), and the read that follows finds them
        hot. The promotion counts once, when the last step is done. With a hot budget the
        promotion is all or nothing (``_promote``): one step. Raises as :meth:`messages`."""
        ref = self._conversation(handle)
        if not isinstance(start, int) or not (stop is None or isinstance(stop, int)):
            raise InvalidArgument("start and stop must be ints")
        cold = layout.not_hot(conversations.nodes(ref, start, stop))
        if not cold:
            return None
        return self._promotion(ref, cold)

    def _promotion(
        self, ref: ConversationRef, cold: list[ChunkEntry]
    ) -> Generator[None, None, None]:
        if self.config.hot_budget_bytes:
            self._promote(cold, _CONVERSATION, ref)
            return
        moved = 0
        for batch in steps.batches(
            cold, PROMOTE_STEP_BYTES, lambda e: _level(e.loc) is not _HOT and e.refs > 0
        ):
            if self._promote(batch, _CONVERSATION, ref, count=False):
                moved += sum({id(e): e.size for e in batch}.values())
                yield
        if moved:
            state = ref.agent.state
            self.promotions[state] += 1
            self.promoted_bytes[state] += moved

    def may_map(self, handle: Handle, segment: Segment) -> bool:
        """May the holder of ``handle`` map ``segment`` (see every byte of it)? O(1).

        True only for a live segment of this store and: a segment of the messages of
        ``handle``'s conversation (its own, ``store.hot``: never another handle's, never a
        released one's); a segment of the ``shared`` pool (prompts and tool definitions,
        mapped by any agent of the domain); or an SMU handle's content alone in an exclusive
        segment. Every other segment is read as copies. An unknown handle: False.
        """
        ref = self.refs.get(handle)
        if ref is None or self.hot.segments.get(segment.seg_id) is not segment:
            return False
        if segment.owner:
            return ref.__class__ is ConversationRef and self.hot.owned_by(segment, handle)
        if segment.pool == SHARED:
            return True
        if segment.exclusive and ref.__class__ is Ref:
            ext = layout.extents_of(self, ref.smu)
            return ext is not None and ext == ((segment, 0, segment.used),)
        return False

    def length(self, handle: Handle) -> int:
        """Number of messages in the conversation."""
        return self._conversation(handle).length

    # --- maintenance -----------------------------------------------------------------------

    def check(self, *, verify_bytes: bool = True) -> CheckReport:
        """Mark-sweep: recompute every refcount from the live refs and report drift; with
        ``verify_bytes``, re-hash every chunk in every tier."""
        self._check_open()
        return run_check(self, verify_bytes=verify_bytes)

    def repair(self) -> tuple[CheckReport, list[str], list[str]]:
        """Check, then fix what can be fixed: refcounts set to the recomputed ones, orphaned
        index entries dropped. Returns the report before, what was fixed and what could not be
        (corrupt chunks: their bytes are lost unless the journal holds them)."""
        self._check_open()
        return recovery.repair(self)

    def close(self) -> None:
        """Release everything. Views already handed out stay readable."""
        if self._closed:
            return
        self._closed = True
        if self.journal_rewrite is not None:  # abandoned: the old journal stays whole
            self.journal_rewrite.close()
            self.journal_rewrite = None
        if self.compaction is not None:
            self.compaction.close()
            self.compaction = None
        for _, demotion in self.demoting.values():
            demotion.close()
        self.demoting.clear()
        self.hot.close()
        self.warm.close()
        if self.cold is not None:
            self.cold.close()
        if self.journal is not None:
            self.journal.close()
        self.refs.clear()
        self.handles_by_type = [0] * len(self.handles_by_type)
        self.chunks.clear()
        self.smus.clear()
        self.nodes.clear()
        self.message_count = 0
        self.names.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _ref(self, handle: Handle, *, touch: bool = True) -> AnyRef:
        """The handle's ref; ``touch`` records the use (the policy's "last access"): reads,
        appends and pins are uses, while sharing, releasing, sizing and demoting are not."""
        try:
            ref = self.refs[handle]
        except (KeyError, TypeError):
            if self._closed:
                raise StoreClosed("the store is closed") from None
            raise UnknownHandle(f"unknown handle {handle!r}") from None
        if touch:
            ref.touched = self.clock()
        return ref

    def _conversation(self, handle: Handle) -> ConversationRef:
        ref = self._ref(handle)
        if ref.__class__ is not ConversationRef:
            raise WrongType(f"handle {handle} is a {ref.smu_type.label}, not a conversation")
        return ref

    def _check_quota(self, agent: Agent, size: int) -> None:
        cfg = self.config
        if cfg.agent_quota_bytes and agent.logical_bytes + size > cfg.agent_quota_bytes:
            raise QuotaExceeded(
                f"agent {agent.name!r} would hold {agent.logical_bytes + size} bytes "
                f"(quota {cfg.agent_quota_bytes})"
            )
        if cfg.agent_quota_handles and agent.handles + 1 > cfg.agent_quota_handles:
            raise QuotaExceeded(
                f"agent {agent.name!r} holds {agent.handles} handles "
                f"(quota {cfg.agent_quota_handles})"
            )

    def _check_domain_quota(self, new_bytes: int) -> None:
        quota = self.config.domain_quota_bytes
        if quota and self.hot.live_bytes + self.warm.frame_bytes + new_bytes > quota:
            raise QuotaExceeded(f"the domain would exceed its {quota}-byte quota")

    def intern_size(self, n: int) -> int:
        """The shared int object for size ``n`` (ints above 256 are 28-byte objects), for
        sizes up to ``MESSAGE_WHOLE_MAX``: every chunk's and every one-chunk message's, at most
        16,385 entries. A larger size is a message of several chunks and keeps an int of its
        own (28 bytes beside 16 KiB or more of content): interned, each distinct one stayed in
        the table for the daemon's life (~68 bytes each), after its message was long gone."""
        return self._sizes.setdefault(n, n) if n <= _WHOLE_MAX else n

    def new_ref(self, agent: Agent, smu: SMU) -> Handle:
        h = Handle(next(self._handles))
        if h in self.refs:
            h = self.new_handle()
        ref = self.refs[h] = Ref(h, agent, smu)
        ref.touched = self.clock()
        smu.refs += 1
        size = smu.size
        agent.handles += 1
        self.handles_by_type[smu.smu_type] += 1
        agent.logical_bytes += size
        agent.by_type[smu.smu_type] += size
        return h

    def ingest_chunks(
        self,
        buf: Buffer,
        smu_type: SMUType,
        whole_id: ChunkId,
        *,
        exclusive: bool = False,
        agent: Agent | None = None,
        owner: int = 0,
        whole_max: int | None = None,
    ) -> tuple[ChunkEntry, ...]:
        """Chunk, hash and place new chunks of ``buf`` (hot); return its entries, each ref'd
        once per occurrence. New chunks of one call are placed contiguously, in order (in
        conversation handle ``owner``'s segment, with one); chunks found already stay put.

        ``whole_id`` is the BLAKE3 of all of ``buf``, which callers already have: content up to
        the chunker's threshold (``whole_max``, if given) is one chunk with that id, so it is
        hashed once, not twice.
        """
        size = len(buf)
        chunks = self.chunks
        if size <= (self._threshold if whole_max is None else whole_max):
            entry = chunks.get(whole_id)
            if entry is not None:
                if entry.__class__ is MessageNode:  # a message's own chunk, held twice now
                    entry = conversations.detach(self, entry)
                if entry.loc.tier is not _HOT and not self._claimable:
                    self._revive([entry], smu_type, agent)
            else:
                entry = ChunkEntry(whole_id, self._sizes.setdefault(size, size))
                self.place_new(entry, buf, smu_type, owner)
            entry.refs += 1
            return (entry,)
        view = memoryview(buf)
        sizes = self._sizes
        entries: list[ChunkEntry] = []
        missing: list[ChunkEntry] = []
        pieces = Slices(view)
        pending: dict[ChunkId, ChunkEntry] = {}
        start = 0
        for end in self.chunker.cut(view):
            cid = chunk_id(view[start:end])
            entry = chunks.get(cid) or pending.get(cid)
            if entry.__class__ is MessageNode:  # a message's own chunk, held twice now
                entry = conversations.detach(self, entry)
            if entry is None:
                n = end - start
                entry = ChunkEntry(cid, sizes.setdefault(n, n))
                pending[cid] = entry
                missing.append(entry)
                pieces.add(start, end)
            entries.append(entry)
            start = end
        if not self._claimable:
            demoted = [e for e in entries if e.loc is not None and e.loc.tier is not _HOT]
            if demoted:
                self._revive(demoted, smu_type, agent)
        if missing and self._claimable:
            keep = [i for i, e in enumerate(missing) if not self._claim(e.id, e)]
            missing = [missing[i] for i in keep]
            pieces = pieces.only(keep)
        if missing:
            nbytes = sum(e.size for e in missing)
            self._check_domain_quota(nbytes)
            budget = self.config.hot_budget_bytes
            if budget and self.hot.live_bytes + nbytes > budget:
                tiering.make_room(self, nbytes)
            self.hot.put(missing, pieces, smu_type, exclusive=exclusive, owner=owner)
        if pending:
            chunks.update(pending)
        for entry in entries:
            entry.refs += 1
        return tuple(entries)

    def place_new(self, entry: ChunkEntry, buf: Buffer, smu_type: SMUType, owner: int = 0) -> None:
        """Index a new one-chunk ``entry`` whose bytes are ``buf`` and place it: where an
        earlier run's pack holds it (restoring), else hot within the budget (in conversation
        handle ``owner``'s segment, with one). Its refs are the caller's to set. Raises
        ``QuotaExceeded`` (then nothing is indexed)."""
        size = len(buf)
        self._check_domain_quota(size)
        if not (self._claimable and self._claim(entry.id, entry)):
            budget = self.config.hot_budget_bytes
            if budget and self.hot.live_bytes + size > budget:
                tiering.make_room(self, size)
            self.hot.put_one(entry, buf, smu_type, owner)
        self.chunks[entry.id] = entry

    def _ingest_smu(self, cid: ChunkId, smu_type: SMUType, buf: Buffer, agent: Agent) -> SMU:
        exclusive = len(buf) > self.config.exclusive_min_bytes
        smu = SMU(
            cid,
            smu_type,
            len(buf),
            self.ingest_chunks(buf, smu_type, cid, exclusive=exclusive, agent=agent),
        )
        # Same bytes under another type: a separate SMU (types drive dictionaries and policy);
        # the chunks are shared all the same. The index keeps the first.
        self.smus.setdefault(cid, smu)
        return smu

    def _unref_smu(self, smu: SMU) -> None:
        smu.refs -= 1
        if smu.refs:
            return
        if self.smus.get(smu.content_id) is smu:
            del self.smus[smu.content_id]
        self.unref_chunks(smu.chunks)

    def unref_chunks(self, entries: Iterable[ChunkEntry]) -> None:
        chunks = self.chunks
        for e in entries:
            e.refs -= 1
            if e.refs == 0:
                del chunks[e.id]
                self.freed(e)

    def _unpin(self, entries: list[ChunkEntry]) -> None:
        pins = self.pins
        for e in entries:
            n = pins.get(e.id, 0) - 1
            if n > 0:
                pins[e.id] = n
            else:
                pins.pop(e.id, None)

    def _entries_of(
        self, ref: AnyRef, keep: int = 0, *, own_only: bool = False
    ) -> Iterator[ChunkEntry]:
        """The ref's chunk occurrences; ``keep``: leaving out a conversation's newest ``keep``
        messages; ``own_only``: and its messages that other conversations share."""
        if ref.__class__ is ConversationRef:
            for node in _history(ref, keep, own_only):
                yield from node.chunks
        else:
            yield from ref.smu.chunks  # type: ignore[union-attr]

    def _promote(
        self,
        entries: list[ChunkEntry],
        smu_type: SMUType,
        reader: AnyRef | None = None,
        *,
        force: bool = False,
        count: bool = True,
    ) -> bool:
        """Bring ``entries`` that are not hot into the hot tier, contiguously, making room
        within the budget first; counted as a promotion of the reader's agent (unless not
        ``count``: the caller counts). Returns False (nothing moved) when they cannot fit in
        the budget even after making room, unless ``force`` (a pin): the reader then gets the
        bytes decoded, and the budget holds."""
        movers = list({id(e): e for e in entries if _level(e.loc) is not _HOT}.values())
        if not movers:
            return True
        nbytes = sum(e.size for e in movers)
        budget = self.config.hot_budget_bytes
        if budget:
            tiering.make_room(self, nbytes, None if reader is None else reader.handle)
            if not force and self.hot.live_bytes + nbytes > budget:
                return False
        payloads = [self._load(e) for e in movers]
        olds = [e.loc for e in movers]
        ats = [e.at for e in movers]
        if reader is not None and reader.__class__ is ConversationRef:
            # Messages its reader reads: into the reader's own segment, so that its next
            # reads are extents again (``message_extents``); it may read all of them.
            self.hot.put(movers, payloads, smu_type, owner=reader.handle)
        else:
            exclusive = nbytes > self.config.exclusive_min_bytes
            self.hot.put(movers, payloads, smu_type, exclusive=exclusive)
        warm = self.warm
        for e, old, at in zip(movers, olds, ats, strict=True):
            if old.__class__ is WarmGroup and not force:  # a pin stays hot: no copy to keep
                warm.keep_clean(e, old, at)
            else:
                self._forget(old, e.size)
        self.epoch += 1
        if reader is not None and count:
            state = reader.agent.state
            self.promotions[state] += 1
            self.promoted_bytes[state] += nbytes
        return True

    def _revive(self, entries: list[ChunkEntry], smu_type: SMUType, agent: Agent | None) -> None:
        """Content allocated again while demoted is in use again: back to hot (within the
        budget), counted as a promotion of the allocating agent."""
        if self._promote(entries, smu_type) and agent is not None:
            nbytes = sum(e.size for e in entries)
            self.promotions[agent.state] += 1
            self.promoted_bytes[agent.state] += nbytes

    def _load(self, entry: ChunkEntry) -> memoryview:
        loc = entry.loc
        if loc.__class__ is Segment:
            return loc.view(entry.offset, entry.size)
        if loc.__class__ is WarmGroup:
            return self.warm.load(entry)
        assert self.cold is not None
        return self.cold.load(entry)

    def freed(self, entry: ChunkEntry) -> None:
        """``entry`` is gone from the index (no claim left): its tier forgets its bytes, and
        a clean copy of them in a warm frame goes too."""
        if entry.loc is not None:
            self._forget(entry.loc, entry.size)
        if self.warm.clean:
            self.warm.drop_clean(entry)

    def _forget(self, loc: Segment | WarmGroup | ColdGroup, size: int) -> None:
        """A chunk of ``size`` bytes left ``loc`` (freed or moved): tell its tier."""
        if loc.__class__ is Segment:
            self.hot.forget(loc, size)
        elif loc.__class__ is WarmGroup:
            self.warm.forget(loc, size)
        else:
            assert self.cold is not None
            self.cold.forget(loc, size)  # type: ignore[arg-type]

    def new_handle(self) -> Handle:
        """A handle number not in use (restored handles come from an earlier numbering)."""
        h = next(self._handles)
        while h in self.refs:
            h = next(self._handles)
        return Handle(h)

    def _new_conversation(self, agent: Agent, data: object) -> Handle:
        if isinstance(data, bytes | bytearray | memoryview | str):
            raise InvalidArgument(
                "a conversation is allocated from an iterable of messages, not one buffer"
            )
        try:
            messages = [_as_buffer(m, "message") for m in data]  # type: ignore[attr-defined]
        except TypeError:
            raise InvalidArgument("conversation data must be an iterable of messages") from None
        self._check_quota(agent, sum(len(m) for m in messages))
        h = self.new_handle()
        if self.journal is not None:
            self.journal.conv(h, agent.name)  # DiskFull: nothing was created
        ref = ConversationRef(h, agent)
        ref.touched = self.clock()
        self.refs[h] = ref
        agent.handles += 1
        self.handles_by_type[_CONVERSATION] += 1
        journal = self.journal
        try:
            for m in messages:
                conversations.append(self, ref, m, journal_later=journal is not None)
            if journal is not None:
                journal.flush()
        except BaseException:
            if journal is not None:
                journal.drop_pending()
            self.release(h)  # all or nothing, as for any other allocation
            raise
        return h

    def _claim(self, cid: ChunkId, entry: ChunkEntry) -> bool:
        """While restoring: place ``entry`` where an earlier run's pack holds its chunk."""
        assert self.cold is not None
        return self.cold.claim(cid, entry)
