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

from array import array
from typing import TYPE_CHECKING

from agentmem.ids import ChunkId, Handle
from agentmem.states import AgentState, SMUType, Tier
from agentmem.store.segments import Segment

if TYPE_CHECKING:
    from agentmem.store.cold import ColdGroup


class WarmGroup:
    """One warm frame holding the plain bytes of one or more chunks, concatenated."""

    tier = Tier.WARM

    __slots__ = ("clean", "digest", "frame", "live", "members", "raw_size", "smu_type", "starts")

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
        #: Offsets of the members placed here, in placement order (see :func:`place`).
        self.starts = array("I")
        #: Members promoted to the hot tier whose bytes this frame still holds (clean
        #: copies, ``WarmTier.keep_clean``); the frame stays while ``live`` or this is > 0.
        self.clean = 0
        #: Member index -> the entry promoted from it (set on the first clean copy; an entry
        #: counts only while ``WarmTier.clean`` names this group for it).
        self.members: list[ChunkEntry | None] | None = None


#: Member indexes as shared int objects. An entry names its place in its container by index
#: (``ChunkEntry.at``); the byte offset lives in the container's ``starts`` array (4 bytes). An
#: int above 256 is a 28-byte object, but index ``i`` of every container is the same object
#: here, so 10 segments of ~2,400 messages pay for index ``i`` once, not ten times: an offset
#: costs ~5 bytes a chunk instead of 28 (tests/store/test_metadata_budget.py). A fixed cost of
#: ~140 KB a process (the store's only: clients never import it), made at import so that no
#: store's figures depend on which came first; indexes past it (a container of more than 4,096
#: chunks: content over ~10 MB in a segment of its own, or segments of chunks under 1 KiB) are
#: ints of their own, 28 bytes as an offset was.
SHARED_INDEXES = 4096
_INDEXES: tuple[int, ...] = tuple(range(SHARED_INDEXES))


def place(entry: ChunkEntry, loc: Segment | WarmGroup | ColdGroup, offset: int) -> None:
    """Record that ``entry``'s bytes are at ``offset`` of ``loc`` (the tiers' one way of
    setting a location). Containers are append-only, so ``loc.starts`` only grows."""
    starts = loc.starts
    i = len(starts)
    entry.at = _INDEXES[i] if i < SHARED_INDEXES else i
    starts.append(offset)
    entry.loc = loc


def put_back(entry: ChunkEntry, loc: WarmGroup, index: int) -> None:
    """Record that ``entry``'s bytes are member ``index`` of ``loc`` again (a clean copy
    taken back, ``WarmTier.reinstate``): the offset is the one :func:`place` recorded."""
    entry.at = _INDEXES[index] if index < SHARED_INDEXES else index
    entry.loc = loc


class ChunkEntry:
    """One unique chunk of a domain and where its bytes are.

    ``loc`` is the :class:`Segment` (hot), :class:`WarmGroup` (warm) or ``ColdGroup`` (cold,
    ``store/cold.py``) holding it; ``at`` its index in ``loc.starts``, set by :func:`place`.
    ``loc`` is None only while a new entry waits for its first placement.
    """

    __slots__ = ("at", "id", "loc", "refs", "size")

    def __init__(self, cid: ChunkId, size: int) -> None:
        self.id = cid
        #: Plain bytes; an interned int (``Store.intern_size``): one object per distinct size.
        self.size = size
        self.refs = 0
        self.loc: Segment | WarmGroup | ColdGroup = None  # type: ignore[assignment]
        self.at = 0

    @property
    def offset(self) -> int:
        """Where the bytes start in ``loc`` (no int object per entry; see :func:`place`)."""
        return self.loc.starts[self.at]

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


class MessageNode(ChunkEntry):
    """One message of a conversation, identified by its parent and its content.

    A message's id is BLAKE3(parent id || content id) (``hashing.message_id``), so two nodes
    have the same id exactly when they have the same parent node and the same content id:
    the store finds nodes by (parent, content id) and keeps no message id (65 bytes and a
    dict slot a message; :func:`agentmem.store.conversations.message_id_of` computes one).

    Two forms, because most messages are one chunk of content seen nowhere else:

    * **own chunk**: the node *is* that chunk's entry (it is in the chunk index, ``loc`` is
      its container, ``id`` its chunk id, ``chunks`` is ``(self,)``). Invariant: nothing else
      holds the chunk and exactly one claim holds the node, so ``refs`` is 1 read either way
      (a chunk's occurrences, a node's claims). One object instead of two (a node and an
      entry) saves ~64 bytes a message (tests/store/test_metadata_budget.py).
    * **referencing**: ``loc`` is its one :class:`ChunkEntry` or a tuple of them; ``id`` is
      the content id; the node is in ``Store.nodes``. A node of the first form is changed to
      this one (:func:`agentmem.store.conversations.detach`) before a second claim or a
      second occurrence of its chunk is added, and never changed back.

    ``refs`` counts the node's claims: child nodes plus conversation refs whose tip it is.
    ``size`` is the message's plain bytes.
    """

    __slots__ = ("parent",)

    def __init__(self, content_id: ChunkId, size: int, parent: MessageNode | None) -> None:
        super().__init__(content_id, size)
        self.parent = parent

    @property
    def owns_chunk(self) -> bool:
        """True for the first form: the node is its own chunk's entry."""
        loc: object = self.loc  # a container, or (second form) what the node references
        cls = loc.__class__
        return cls is not ChunkEntry and cls is not tuple

    @property
    def chunks(self) -> tuple[ChunkEntry, ...]:
        """The message's chunks, in order."""
        loc: object = self.loc
        if isinstance(loc, tuple):
            return loc
        if loc.__class__ is ChunkEntry:
            return (loc,)
        return (self,)


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


#: A conversation ref remembers every this-many-th node of its history (``marks``), so reaching
#: message ``i`` walks at most 63 parent links (~2 us) while the ref costs 8/64 bytes a
#: message instead of the 8 of a full list of its nodes (and a fork copies 1/64 of the list).
MARK_STRIDE = 64


class ConversationRef:
    """A handle on a conversation: a cursor at a tip message.

    The history is the tip's parent chain, ``length`` messages long; ``marks[k]`` is the node
    at index ``(k + 1) * MARK_STRIDE - 1`` (``store/conversations.py`` walks from there).
    ``path`` builds the whole list, O(length), for callers that want one.
    """

    __slots__ = ("agent", "handle", "length", "marks", "pinned", "size", "tip", "touched")

    smu_type = SMUType.CONVERSATION

    def __init__(self, handle: Handle, agent: Agent) -> None:
        self.handle = handle
        self.agent = agent
        #: The newest message (None: empty).
        self.tip: MessageNode | None = None
        self.length = 0
        self.marks: list[MessageNode] = []
        #: Plain bytes of all its messages.
        self.size = 0
        self.pinned = False
        #: Store clock at the last operation on this handle (the policy's "last access").
        self.touched = 0.0

    @property
    def path(self) -> list[MessageNode]:
        """The messages from the root to the tip (a new list, O(length))."""
        out: list[MessageNode] = []
        node = self.tip
        while node is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out
