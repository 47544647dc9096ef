"""The hot tier: chunks uncompressed in memfd segments, read zero-copy.

Placement keeps the new chunks of one allocation contiguous (one segment, in order), so a
prompt that many agents allocate identically is one extent and reads as a single view.
Content larger than a quarter of a segment gets a dedicated segment sized to fit.

Segments come in two pools, because a mapping exposes every byte of its segment, not just the
extent asked for (isolation between agents of one domain):

* ``shared``: system prompts and tool definitions, the content agents exist to share. Mapping
  one of these segments can show a reader other agents' prompts of the domain, as a shared
  library's pages do; it never shows a conversation or a tool result.
* ``private``: everything else. Large private content (``exclusive=True``) gets a segment of its
  own, holding nothing but it, so whoever may read it may map it; other private chunks share
  segments that are never handed out (the daemon copies from them).
* ``far``: demoted content kept uncompressed on a far-memory NUMA node (CXL memory shows up as
  a node without CPUs; ``store/numa.py``), when the machine has one: each new far segment is
  bound to that node with ``mbind`` before its first byte is written. Never handed out (copied
  like private chunks). Its bytes do not count against the hot budget, which is for near RAM.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

from agentmem.states import SMUType, Tier
from agentmem.stats import TierStats
from agentmem.store.numa import FarMemory
from agentmem.store.records import ChunkEntry, place
from agentmem.store.segments import PAGE, Segment

Buffer = bytes | bytearray | memoryview

SHARED = "shared"
PRIVATE = "private"
FAR = "far"
#: Types whose segments may be mapped by any agent of the domain that reads one of them.
SHARED_TYPES = frozenset({SMUType.SYSTEM_PROMPT, SMUType.TOOL_DEF})


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
        self.segments: dict[int, Segment] = {}
        self._ids = itertools.count(1)
        self._open: dict[str, Segment | None] = {SHARED: None, PRIVATE: None, FAR: None}
        self._chunks = 0
        self._raw = 0
        #: Plain bytes of the chunks in far segments (part of ``_raw``).
        self.far_bytes = 0
        self.retired_segments = 0
        #: Called with each segment retired (the daemon tells clients that mapped it).
        self.on_retire: list[Callable[[Segment], None]] = []

    def is_open(self, seg: Segment) -> bool:
        """True for a segment small allocations are still appended to."""
        return self._open[seg.pool] is seg

    def retire_if_empty(self, seg: Segment) -> None:
        """Retire ``seg`` if no live chunk is left in it (and it is not an open one)."""
        if seg.live_bytes == 0 and not self.is_open(seg) and seg.seg_id in self.segments:
            self._retire(seg)

    @property
    def live_bytes(self) -> int:
        """Plain bytes of the chunks held in near RAM (far segments not included): what the
        hot budget governs."""
        return self._raw - self.far_bytes

    def _new_segment(self, capacity: int, pool: str, exclusive: bool = False) -> Segment:
        seg = Segment(next(self._ids), capacity, pool=pool, exclusive=exclusive)
        if pool == FAR:
            assert self.far is not None and seg._wmap is not None
            self.far.bind(seg._wmap, seg.capacity)  # before any page is touched
        self.segments[seg.seg_id] = seg
        return seg

    def _segment_for(self, nbytes: int, pool: str, exclusive: bool = False) -> Segment:
        if exclusive or nbytes > self.segment_bytes // 4:
            # Dedicated: sized to fit exactly (page-rounded) so large content is contiguous
            # without abandoning the open segment's free space.
            return self._new_segment(nbytes, pool, exclusive)
        current = self._open[pool]
        if current is not None and current.free >= nbytes:
            return current
        seg = self._new_segment(self.segment_bytes, pool)
        old = self._open[pool]
        self._open[pool] = seg
        if old is not None and old.live_bytes == 0:
            self._retire(old)
        return seg

    def put(
        self,
        entries: Sequence[ChunkEntry],
        payloads: Sequence[Buffer],
        smu_type: SMUType,
        *,
        exclusive: bool = False,
        far: bool = False,
    ) -> None:
        """Place ``payloads`` (plain bytes of ``entries``, in order) contiguously; set locations.

        ``exclusive``: in a segment of their own (sealed once filled), which can then be handed
        to anyone who may read exactly these bytes. ``far``: in the far pool (needs ``far``).
        """
        total = 0
        for p in payloads:
            total += len(p)
        pool = FAR if far else pool_of(smu_type)
        seg = self._segment_for(total, pool, exclusive and pool == PRIVATE)
        for entry, payload in zip(entries, payloads, strict=True):
            place(entry, seg, seg.append(payload))
        self._chunks += len(entries)
        self._raw += total
        if far:
            self.far_bytes += total
        if seg.exclusive:
            seg.seal()  # filled in one go: no writable mapping needs to stay

    def put_one(self, entry: ChunkEntry, payload: Buffer, smu_type: SMUType) -> None:
        """:meth:`put` for a single chunk: the 1 KiB-message path, kept short on purpose."""
        pool = pool_of(smu_type)
        seg = self._open[pool]
        off = -1 if seg is None else seg.append(payload)
        if seg is None or off < 0:
            seg = self._segment_for(len(payload), pool)
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
        self._chunks -= 1
        self._raw -= size
        if seg.pool == FAR:
            self.far_bytes -= size
        if seg.live_bytes == 0 and not self.is_open(seg):
            self._retire(seg)

    def _retire(self, seg: Segment) -> None:
        del self.segments[seg.seg_id]
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
