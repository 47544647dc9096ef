"""The warm tier: chunks held as zstd frames in RAM, grouped and verified.

Chunks handed over together (the messages of one conversation, the chunks of one SMU) are
concatenated into groups of up to ``WARM_GROUP_BYTES`` raw bytes and compressed as one frame
with the dictionary of their SMU type: single ~1 KiB messages compress 2.3x alone, whole
conversations 7.4x (DESIGN.md). A read decodes the group (cached: sequential reads of one
conversation decode each group once) and re-hashes the chunk before returning it.

Before a chunk counts as warm, its frame is decoded and every member re-hashed against its id
(``verify``), so a codec bug can never silently replace stored bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentmem import constants
from agentmem.codec import DictionarySet, decode_frame, encode_frame
from agentmem.errors import CorruptFrame
from agentmem.hashing import chunk_id
from agentmem.ids import short
from agentmem.states import SMUType, Tier
from agentmem.store.records import ChunkEntry, WarmGroup
from agentmem.store.stats import TierStats

Buffer = bytes | bytearray | memoryview


class WarmTier:
    """Compressed chunks in RAM. Not thread-safe."""

    tier = Tier.WARM

    def __init__(
        self,
        dictionaries: DictionarySet,
        *,
        level: int = 3,
        verify: bool = True,
        group_bytes: int = constants.WARM_GROUP_BYTES,
    ) -> None:
        self.dictionaries = dictionaries
        self.level = level
        self.verify = verify
        self.group_bytes = group_bytes
        self._chunks = 0
        self._raw = 0
        self._frames = 0
        self._frame_bytes = 0
        # One-entry decode cache: (group, plain bytes).
        self._cache: tuple[WarmGroup, memoryview] | None = None

    def put(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        """Compress ``payloads`` (plain bytes of ``entries``) into frames; set their locations.

        Raises ``CorruptFrame`` if verification fails; then no entry has been changed.
        """
        start = 0
        n = len(entries)
        while start < n:
            end = start
            raw = 0
            while end < n and (end == start or raw + len(payloads[end]) <= self.group_bytes):
                raw += len(payloads[end])
                end += 1
            self._put_group(entries[start:end], payloads[start:end], smu_type)
            start = end

    def _put_group(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        dicts = self.dictionaries
        dictionary = dicts.current(smu_type)
        if dictionary is None and smu_type is not SMUType.BLOB:
            for p in payloads:
                trained = dicts.observe(smu_type, p)
                if trained is not None:
                    dictionary = trained
                    break
        plain = b"".join(payloads)
        frame = encode_frame(plain, dictionary=dictionary, level=self.level)
        if self.verify:
            decoded = memoryview(decode_frame(frame, dicts))
            off = 0
            for entry in entries:
                if chunk_id(decoded[off : off + entry.size]) != entry.id:
                    raise CorruptFrame(
                        f"warm frame failed verification for chunk {short(entry.id)}"
                    )
                off += entry.size
        group = WarmGroup(frame, len(plain), len(entries), smu_type)
        off = 0
        for entry in entries:
            entry.loc = group
            entry.offset = off
            entry.tier = Tier.WARM
            off += entry.size
        self._chunks += len(entries)
        self._raw += len(plain)
        self._frames += 1
        self._frame_bytes += len(frame)

    def _plain(self, group: WarmGroup) -> memoryview:
        cache = self._cache
        if cache is not None and cache[0] is group:
            return cache[1]
        plain = memoryview(decode_frame(group.frame, self.dictionaries))
        if len(plain) != group.raw_size:
            raise CorruptFrame("warm frame decoded to the wrong size")
        self._cache = (group, plain)
        return plain

    def load(self, entry: ChunkEntry) -> memoryview:
        """The chunk's plain bytes, decoded and verified against its id.

        The view is over a private decoded buffer (immutable ``bytes``); the caller may keep it.
        """
        group = entry.loc
        assert isinstance(group, WarmGroup)
        data = self._plain(group)[entry.offset : entry.offset + entry.size]
        if chunk_id(data) != entry.id:
            raise CorruptFrame(f"warm chunk {short(entry.id)} does not match its id")
        return data

    def release(self, entry: ChunkEntry) -> None:
        """The chunk left this tier (freed); drop its frame when no member is live."""
        group = entry.loc
        assert isinstance(group, WarmGroup)
        self.forget(group, entry.size)

    def forget(self, group: WarmGroup, size: int) -> None:
        """A chunk of ``size`` bytes in ``group`` is no longer held here (freed or moved)."""
        group.live -= 1
        self._chunks -= 1
        self._raw -= size
        if group.live == 0:
            self._frames -= 1
            self._frame_bytes -= len(group.frame)
            if self._cache is not None and self._cache[0] is group:
                self._cache = None

    def stats(self) -> TierStats:
        return TierStats(
            tier=self.tier.label,
            chunks=self._chunks,
            raw_bytes=self._raw,
            stored_bytes=self._frame_bytes,
            physical_bytes=self._frame_bytes,
            containers=self._frames,
        )

    def close(self) -> None:
        self._cache = None
