"""The hot tier: chunks uncompressed in memfd segments, read zero-copy.

Placement keeps the new chunks of one allocation contiguous (one segment, in order), so a
prompt that many agents allocate identically is one extent and reads as a single view.
Content larger than a quarter of a segment gets a dedicated segment sized to fit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

from agentmem.states import SMUType, Tier
from agentmem.stats import TierStats
from agentmem.store.records import ChunkEntry
from agentmem.store.segments import PAGE, Segment

Buffer = bytes | bytearray | memoryview


class HotTier:
    """Owns the segments of one domain. Not thread-safe."""

    tier = Tier.HOT

    def __init__(self, segment_bytes: int) -> None:
        self.segment_bytes = segment_bytes
        self.segments: dict[int, Segment] = {}
        self._ids = itertools.count(1)
        self._open: Segment | None = None
        self._chunks = 0
        self._raw = 0
        self.retired_segments = 0
        #: Called with each segment retired (the daemon tells clients that mapped it).
        self.on_retire: list[Callable[[Segment], None]] = []

    @property
    def open_segment(self) -> Segment | None:
        """The segment small allocations are appended to."""
        return self._open

    def retire_if_empty(self, seg: Segment) -> None:
        """Retire ``seg`` if no live chunk is left in it (and it is not the open one)."""
        if seg.live_bytes == 0 and seg is not self._open and seg.seg_id in self.segments:
            self._retire(seg)

    @property
    def live_bytes(self) -> int:
        """Plain bytes of the chunks held."""
        return self._raw

    def _segment_for(self, nbytes: int) -> Segment:
        seg = self._open
        if seg is not None and seg.free >= nbytes:
            return seg
        if nbytes > self.segment_bytes // 4:
            # Dedicated: sized to fit exactly (page-rounded) so large content is contiguous
            # without abandoning the open segment's free space.
            seg = Segment(next(self._ids), nbytes)
            self.segments[seg.seg_id] = seg
            return seg
        seg = Segment(next(self._ids), self.segment_bytes)
        self.segments[seg.seg_id] = seg
        old = self._open
        self._open = seg
        if old is not None and old.live_bytes == 0:
            self._retire(old)
        return seg

    def put(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        """Place ``payloads`` (plain bytes of ``entries``, in order) contiguously; set locations."""
        del smu_type  # hot placement does not depend on the type
        total = 0
        for p in payloads:
            total += len(p)
        seg = self._segment_for(total)
        for entry, payload in zip(entries, payloads, strict=True):
            off = seg.append(payload)
            entry.loc = seg
            entry.offset = off
        self._chunks += len(entries)
        self._raw += total

    def put_one(self, entry: ChunkEntry, payload: Buffer) -> None:
        """:meth:`put` for a single chunk: the 1 KiB-message path, kept short on purpose."""
        seg = self._open
        off = -1 if seg is None else seg.append(payload)
        if seg is None or off < 0:
            seg = self._segment_for(len(payload))
            off = seg.append(payload)
        entry.loc = seg
        entry.offset = off
        self._chunks += 1
        self._raw += len(payload)

    def load(self, entry: ChunkEntry) -> memoryview:
        """Zero-copy read-only view of a hot chunk."""
        seg = entry.loc
        assert isinstance(seg, Segment)
        return seg.view(entry.offset, entry.size)

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
        if seg.live_bytes == 0 and seg is not self._open:
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
        self._open = None
