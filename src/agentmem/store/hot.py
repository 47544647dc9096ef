"""The hot tier: chunks uncompressed in memfd segments, read zero-copy.

Placement keeps the new chunks of one allocation contiguous (one segment, in order), so a
prompt that many agents allocate identically is one extent and reads as a single view.
Content larger than a quarter of a segment gets a dedicated segment sized to fit.

Segments come in pools, because a mapping exposes every byte of its segment, not just the
extent asked for (isolation between agents of one domain):

* ``shared``: system prompts and tool definitions, the content agents exist to share. Mapping
  one of these segments can show a reader other agents' prompts of the domain, as a shared
  library's pages do; it never shows a conversation or a tool result.
* ``private``: everything else. Large private content (``exclusive=True``) gets a segment of its
  own, holding nothing but it, so whoever may read it may map it; other private chunks share
  segments that are never handed out (the daemon copies from them).
* ``owned``: a conversation's messages, in segments of its own handle (``Segment.owner``),
  which only that handle may map. The messages one handle appends go there contiguously, so
  an agent rereading its whole history every turn reads a few extents, not a copy (a 30 MB
  history copied through the daemon's socket costs ~50 ms of its CPU a turn). Forks and other
  handles on the same history get segments of their own for what they append; the prefix
  they share stays where it is (they read it as copies), so no mapping ever shows a handle
  another's later messages. A conversation gets its first segment once it holds
  ``OWN_AFTER_BYTES``, and its segments grow from ``OWNED_FIRST_BYTES`` by doubling up to
  the store's segment size (numbers below). Messages a handle's read promotes back from warm
  or cold go to its open segment too (it reads every one of them); compaction re-places an
  owner's live chunks in a new segment of the same owner. A released owner's segments join
  the private pool with their owner cleared: nobody may map them again, not even a later handle
  that drew the same number.
* ``far``: demoted content kept uncompressed on a far-memory NUMA node (CXL memory shows up as
  a node without CPUs; ``store/numa.py``), when the machine has one: each new far segment is
  bound to that node with ``mbind`` before its first byte is written. Never handed out (copied
  like private chunks). Its bytes do not count against the hot budget, which is for near RAM.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator, Sequence

from agentmem.states import SMUType, Tier
from agentmem.stats import TierStats
from agentmem.store.numa import FarMemory
from agentmem.store.records import ChunkEntry, place
from agentmem.store.segments import PAGE, Segment

Buffer = bytes | bytearray | memoryview

SHARED = "shared"
PRIVATE = "private"
OWNED = "owned"
FAR = "far"
#: A conversation's messages go to segments of its own once it holds this many bytes. Below,
#: a segment of its own would cost a page (4 KiB) for a few messages: 1,000 conversations of
#: one 200-byte message would take 4 MiB of pages and 1,000 fds instead of 200 KB in shared
#: private segments; and the daemon answers reads up to 16 KiB inline anyway (its
#: ``INLINE_MAX``), so a mapping would not be used. Above it, the copies left behind are at
#: most 16 KiB of a history that is read whole (0.05 % of a 30 MB one).
OWN_AFTER_BYTES = 16 << 10
#: The first segment of a conversation; each next one doubles, up to the store's segment size
#: (4 MiB by default): a 25 MB history takes 64 KiB + ... + 2 MiB + 6 x 4 MiB = 12 segments,
#: and a conversation that stops at 20 KiB has its last 4 KiB in a 64 KiB segment of which
#: it touches 1 or 2 pages (tmpfs allocates pages on first write), not in a 4 MiB one.
OWNED_FIRST_BYTES = 64 << 10
#: How long a pool's open segment may hold nothing live before a maintenance pass retires it
#: (``HotTier.retire_idle_open``): long enough that content allocated and freed in turns keeps
#: reusing it, short enough that a store at rest gives its pages back within a tick or two.
IDLE_OPEN_SECONDS = 1.0
#: Types whose segments may be mapped by any agent of the domain that reads one of them.
SHARED_TYPES = frozenset({SMUType.SYSTEM_PROMPT, SMUType.TOOL_DEF})


def tier_level(loc: object) -> Tier:
    """The tier a chunk's container counts as for tiering: far segments are warm-level
    (demoted, not in near RAM), though read like hot ones."""
    tier: Tier = loc.tier  # type: ignore[attr-defined]
    if tier is Tier.HOT and loc.pool == FAR:  # type: ignore[attr-defined]
        return Tier.WARM
    return tier


def pool_of(smu_type: SMUType) -> str:
    """The segment pool content of ``smu_type`` is placed in."""
    return SHARED if smu_type in SHARED_TYPES else PRIVATE


class HotTier:
    """Owns the segments of one domain. Not thread-safe."""

    tier = Tier.HOT

    def __init__(self, segment_bytes: int, far: FarMemory | None = None) -> None:
        self.segment_bytes = segment_bytes
        #: Binds far segments to the far node; None: no far memory, the far pool is unused.
        self.far = far
        #: ``OWN_AFTER_BYTES`` for this tier (tests set 0 to give every message its owner's
        #: segment).
        self.own_after_bytes = OWN_AFTER_BYTES
        self.segments: dict[int, Segment] = {}
        self._ids = itertools.count(1)
        self._open: dict[str, Segment | None] = {SHARED: None, PRIVATE: None, FAR: None}
        #: Per owner (a conversation handle): the segment its appends go to, and all of its
        #: live segments (to give them up when it is released).
        self._owned_open: dict[int, Segment] = {}
        self._owned: dict[int, list[Segment]] = {}
        self._chunks = 0
        self._raw = 0
        #: Plain bytes of the chunks in far segments (part of ``_raw``).
        self.far_bytes = 0
        self.retired_segments = 0
        #: Open segments found with nothing live by :meth:`retire_idle_open`: since when.
        self._idle_open: dict[int, float] = {}
        #: Called with each segment retired (the daemon tells clients that mapped it).
        self.on_retire: list[Callable[[Segment], None]] = []

    def is_open(self, seg: Segment) -> bool:
        """True for a segment small allocations (or its owner's messages) are appended to."""
        if seg.owner:
            return self._owned_open.get(seg.owner) is seg
        return self._open[seg.pool] is seg

    def owned_by(self, seg: Segment, owner: int) -> bool:
        """True if ``seg`` is a live segment of conversation handle ``owner``'s messages."""
        return seg.owner == owner and owner != 0 and self.segments.get(seg.seg_id) is seg

    def owned_segments(self, owner: int) -> list[Segment]:
        """The live segments of ``owner``'s messages, oldest first (a new list)."""
        return list(self._owned.get(owner, ()))

    def close_owned(self, owner: int) -> None:
        """Append no more to ``owner``'s open segment (its conversation went down a tier
        whole): compaction may take it now, and it is retired at once if nothing in it is
        live. The owner's next append opens a segment of its own again."""
        seg = self._owned_open.pop(owner, None)
        if seg is not None:
            self.retire_if_empty(seg)

    def disown(self, owner: int) -> None:
        """Conversation handle ``owner`` was released: its segments join the private pool (no
        one may map them again; what forks still hold of them stays), an empty one retires."""
        self._owned_open.pop(owner, None)
        for seg in self._owned.pop(owner, ()):
            seg.owner = 0
            seg.pool = PRIVATE
            if seg.live_chunks == 0:
                self._retire(seg)

    def retire_idle_open(self, now: float) -> int:
        """Retire the pools' open segments found with nothing live ``IDLE_OPEN_SECONDS`` ago
        and still so at ``now`` (the maintenance passes call this); returns how many. An open
        segment is kept when it empties, for the next allocation; one left empty held its
        pages (up to ``segment_bytes`` a pool) for as long as the store rested. The next
        allocation opens a new one."""
        seen, idle = self._idle_open, {}
        retired = 0
        for pool, seg in self._open.items():
            if seg is None or not seg.used or seg.live_chunks:
                continue
            since = idle[seg.seg_id] = seen.get(seg.seg_id, now)
            if now - since >= IDLE_OPEN_SECONDS:
                del idle[seg.seg_id]
                self._open[pool] = None
                self._retire(seg)
                retired += 1
        self._idle_open = idle
        return retired

    def retire_if_empty(self, seg: Segment) -> None:
        """Retire ``seg`` if no live chunk is left in it (and it is not an open one)."""
        if seg.live_chunks == 0 and not self.is_open(seg) and seg.seg_id in self.segments:
            self._retire(seg)

    @property
    def live_bytes(self) -> int:
        """Plain bytes of the chunks held in near RAM (far segments not included): what the
        hot budget governs."""
        return self._raw - self.far_bytes

    def _new_segment(
        self, capacity: int, pool: str, exclusive: bool = False, owner: int = 0
    ) -> Segment:
        seg = Segment(next(self._ids), capacity, pool=pool, exclusive=exclusive, owner=owner)
        if pool == FAR:
            assert self.far is not None and seg._wmap is not None
            self.far.bind(seg._wmap, seg.capacity)  # before any page is touched
        self.segments[seg.seg_id] = seg
        if owner:
            self._owned.setdefault(owner, []).append(seg)
        return seg

    def _owned_segment_for(self, nbytes: int, owner: int, fresh: bool) -> Segment:
        if fresh or nbytes > self.segment_bytes // 4:
            return self._new_segment(nbytes, OWNED, owner=owner)  # sized to fit, as below
        current = self._owned_open.get(owner)
        if current is not None and current.free >= nbytes:
            return current
        cap = min(
            OWNED_FIRST_BYTES if current is None else current.capacity * 2, self.segment_bytes
        )
        while cap < nbytes:  # nbytes <= segment_bytes / 4 here: cap stays within it
            cap *= 2
        seg = self._new_segment(cap, OWNED, owner=owner)
        self._owned_open[owner] = seg
        if current is not None and current.live_chunks == 0:
            self._retire(current)
        return seg

    def _segment_for(
        self, nbytes: int, pool: str, exclusive: bool = False, owner: int = 0, fresh: bool = False
    ) -> Segment:
        if owner:
            return self._owned_segment_for(nbytes, owner, fresh)
        if exclusive or fresh or nbytes > self.segment_bytes // 4:
            # Dedicated: sized to fit exactly (page-rounded) so large content is contiguous
            # without abandoning the open segment's free space.
            return self._new_segment(nbytes, pool, exclusive)
        current = self._open[pool]
        if current is not None and current.free >= nbytes:
            return current
        seg = self._new_segment(self.segment_bytes, pool)
        old = self._open[pool]
        self._open[pool] = seg
        if old is not None and old.live_chunks == 0:
            self._retire(old)
        return seg

    def put(
        self,
        entries: Sequence[ChunkEntry],
        payloads: Collection[Buffer],
        smu_type: SMUType,
        *,
        exclusive: bool = False,
        far: bool = False,
        owner: int = 0,
        fresh: bool = False,
    ) -> None:
        """Place ``payloads`` (plain bytes of ``entries``, in order) contiguously; set locations.

        ``exclusive``: in a segment of their own (sealed once filled), which can then be handed
        to anyone who may read exactly these bytes. ``far``: in the far pool (needs ``far``).
        ``owner``: in a segment of that conversation handle's (see the module docstring); the
        caller vouches that the handle may read every one of these chunks. ``fresh``: in a new
        segment sized to fit, not the open one (compaction keeps its runs in order).
        """
        total = 0
        for p in payloads:
            total += len(p)
        if owner and not far:
            seg = self._segment_for(total, OWNED, owner=owner, fresh=fresh)
        else:
            pool = FAR if far else pool_of(smu_type)
            seg = self._segment_for(total, pool, exclusive and pool == PRIVATE, fresh=fresh)
        for entry, payload in zip(entries, payloads, strict=True):
            place(entry, seg, seg.append(payload))
        self._chunks += len(entries)
        self._raw += total
        if far:
            self.far_bytes += total
        if seg.exclusive:
            seg.seal()  # filled in one go: no writable mapping needs to stay

    def put_one(
        self, entry: ChunkEntry, payload: Buffer, smu_type: SMUType, owner: int = 0
    ) -> None:
        """:meth:`put` for a single chunk: the 1 KiB-message path, kept short on purpose."""
        if owner:
            pool = OWNED
            seg = self._owned_open.get(owner)
        else:
            pool = pool_of(smu_type)
            seg = self._open[pool]
        off = -1 if seg is None else seg.append(payload)
        if seg is None or off < 0:
            seg = self._segment_for(len(payload), pool, owner=owner)
            off = seg.append(payload)
        place(entry, seg, off)
        self._chunks += 1
        self._raw += len(payload)

    def load(self, entry: ChunkEntry) -> memoryview:
        """Zero-copy read-only view of a hot chunk."""
        seg = entry.loc
        assert isinstance(seg, Segment)
        return seg.view(seg.starts[entry.at], entry.size)

    def release(self, entry: ChunkEntry) -> None:
        """The chunk left this tier (freed); retire its segment when nothing is live."""
        seg = entry.loc
        assert isinstance(seg, Segment)
        self.forget(seg, entry.size)

    def forget(self, seg: Segment, size: int) -> None:
        """``size`` bytes of a chunk at ``seg`` are no longer held here (freed or moved)."""
        seg.live_bytes -= size
        seg.live_chunks -= 1
        self._chunks -= 1
        self._raw -= size
        if seg.pool == FAR:
            self.far_bytes -= size
        if seg.live_chunks == 0 and not self.is_open(seg):
            self._retire(seg)

    def _retire(self, seg: Segment) -> None:
        del self.segments[seg.seg_id]
        if seg.owner:
            mine = self._owned[seg.owner]
            mine.remove(seg)  # a few segments an owner: 12 for 25 MB
            if not mine:
                del self._owned[seg.owner]
        for callback in self.on_retire:
            callback(seg)
        seg.close()
        self.retired_segments += 1

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments.values())

    def stats(self) -> TierStats:
        used = sum(s.used for s in self.segments.values())
        # Physical: pages touched by appends (memfd pages are allocated on first write).
        physical = sum(-(-s.used // PAGE) * PAGE for s in self.segments.values())
        return TierStats(
            tier=self.tier.label,
            chunks=self._chunks,
            raw_bytes=self._raw,
            stored_bytes=used,
            physical_bytes=physical,
            containers=len(self.segments),
        )

    def close(self) -> None:
        for seg in self.segments.values():
            seg.close()
        self.segments.clear()
        self._open = {SHARED: None, PRIVATE: None, FAR: None}
        self._owned_open.clear()
        self._owned.clear()
