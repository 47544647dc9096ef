"""The store's records: chunks, SMUs, messages, warm groups, agents and refs.

Plain slotted classes, no behaviour beyond trivial accessors: the store and the tiers act on
them. They are kept small on purpose because there is one :class:`ChunkEntry` per unique chunk
(a 100 MB tool catalogue is ~40,000 chunks of 2.5 KiB): the budget is <= 256 bytes of metadata
per chunk, measured by ``agentmem bench store`` (``metadata_bytes_per_chunk``).

Reference counting, who counts what:

* ``ChunkEntry.refs``: occurrences of the chunk in live SMUs and message nodes;
* ``SMU.refs``: handles (refs) that hold the SMU;
* ``MessageNode.refs``: child nodes plus conversation refs whose tip it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentmem.ids import ChunkId, Handle, MessageId
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store.segments import Segment

if TYPE_CHECKING:
    from agentmem.store.cold import ColdGroup


class WarmGroup:
    """One warm frame holding the plain bytes of one or more chunks, concatenated."""

    tier = Tier.WARM

    __slots__ = ("digest", "frame", "live", "raw_size", "smu_type")

    def __init__(
        self, frame: bytes, raw_size: int, digest: bytes, members: int, smu_type: SMUType
    ) -> None:
        self.frame = frame
        self.raw_size = raw_size
        #: BLAKE3 of the plain bytes: one hash verifies a decoded group, whose members were
        #: each verified against their ids when it was built.
        self.digest = digest
        #: Member chunks still referenced; the frame is dropped when this reaches 0.
        self.live = members
        self.smu_type = smu_type


class ChunkEntry:
    """One unique chunk of a domain and where its bytes are.

    ``loc`` is the :class:`Segment` (hot), :class:`WarmGroup` (warm) or ``ColdGroup`` (cold,
    ``store/cold.py``) holding it, at ``offset``.
    """

    __slots__ = ("id", "loc", "offset", "refs", "size")

    def __init__(
        self, cid: ChunkId, size: int, loc: Segment | WarmGroup | ColdGroup, offset: int
    ) -> None:
        self.id = cid
        self.size = size
        self.refs = 0
        self.loc: Segment | WarmGroup | ColdGroup = loc
        self.offset = offset

    @property
    def tier(self) -> Tier:
        """The tier of the container holding the bytes (no slot of its own: 8 bytes a chunk)."""
        return self.loc.tier


class SMU:
    """A semantic memory unit: typed, immutable content made of chunks.

    ``content_id`` is the BLAKE3 of the whole content (for content up to the CDC threshold, the
    same as its only chunk's id), so an identical allocation is found without chunking.
    """

    __slots__ = ("_extents", "chunks", "content_id", "refs", "size", "smu_type")

    def __init__(
        self, content_id: ChunkId, smu_type: SMUType, size: int, chunks: tuple[ChunkEntry, ...]
    ) -> None:
        self.content_id = content_id
        self.smu_type = smu_type
        self.size = size
        self.chunks = chunks
        self.refs = 0
        #: (layout epoch, extents) cache for zero-copy reads; see ``Store._extents``.
        self._extents: tuple[int, tuple[tuple[Segment, int, int], ...] | None] | None = None


class MessageNode:
    """One message of a conversation; its id chains its parent's, so forks share history.

    Most messages are one chunk (up to 4 KiB); such a node keeps the entry itself rather than
    a 1-tuple of it (48 bytes a message, ~10 % of a message's index cost). ``chunks`` hands out
    a tuple either way.
    """

    __slots__ = ("_chunks", "id", "parent", "refs", "size")

    def __init__(
        self,
        mid: MessageId,
        parent: MessageNode | None,
        chunks: tuple[ChunkEntry, ...],
        size: int,
    ) -> None:
        self.id = mid
        self.parent = parent
        self._chunks: ChunkEntry | tuple[ChunkEntry, ...] = (
            chunks[0] if len(chunks) == 1 else chunks
        )
        self.size = size
        self.refs = 0

    @property
    def chunks(self) -> tuple[ChunkEntry, ...]:
        """The message's chunks, in order."""
        c = self._chunks
        return (c,) if c.__class__ is ChunkEntry else c  # type: ignore[return-value]


class Agent:
    """A registered client identity and its running totals.

    Mutable counters are maintained by the store on every operation, so ``get_stats`` is cheap
    for totals; ``unique``/``shared`` splits are computed when asked.
    """

    __slots__ = (
        "agent_id",
        "by_type",
        "handles",
        "importance",
        "logical_bytes",
        "name",
        "orphaned",
        "pid",
        "state",
    )

    def __init__(
        self, agent_id: int, name: str, pid: int, state: AgentState, importance: int
    ) -> None:
        self.agent_id = agent_id
        self.name = name
        self.pid = pid
        self.state = state
        self.importance = importance
        #: Live handles held.
        self.handles = 0
        #: Bytes of content held through handles (what the agent would hold on its own).
        self.logical_bytes = 0
        #: Logical bytes per SMU type, indexed by ``SMUType`` value.
        self.by_type = [0] * (max(SMUType) + 1)
        #: Store clock when the agent was restored from the journal with no process attached
        #: (None: a live agent). Its conversations wait for it to reconnect by name.
        self.orphaned: float | None = None

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, pid={self.pid}, state={self.state.label})"


class Ref:
    """A counted claim of a handle on an SMU, held by one agent."""

    __slots__ = ("agent", "handle", "pinned", "smu", "touched")

    def __init__(self, handle: Handle, agent: Agent, smu: SMU) -> None:
        self.handle = handle
        self.agent = agent
        self.smu = smu
        #: Set by ``mark_hot``: the content stays in the hot tier.
        self.pinned = False
        #: Store clock at the last operation on this handle (the policy's "last access").
        self.touched = 0.0

    @property
    def smu_type(self) -> SMUType:
        return self.smu.smu_type

    @property
    def size(self) -> int:
        return self.smu.size


class ConversationRef:
    """A handle on a conversation: a cursor at a tip message, with the path from the root.

    ``path`` is derived from ``path[-1]``'s parent chain and kept for O(1) indexing.
    """

    __slots__ = ("agent", "handle", "path", "pinned", "size", "touched")

    smu_type = SMUType.CONVERSATION

    def __init__(self, handle: Handle, agent: Agent, path: list[MessageNode], size: int) -> None:
        self.handle = handle
        self.agent = agent
        self.path = path
        self.size = size
        self.pinned = False
        #: Store clock at the last operation on this handle (the policy's "last access").
        self.touched = 0.0
