"""The warm tier: chunks held as zstd frames in RAM, grouped and verified.

Chunks handed over together (the messages of one conversation, the chunks of one SMU) are
concatenated into groups of up to ``WARM_GROUP_BYTES`` raw bytes and compressed as one frame
with the dictionary of their SMU type: single ~1 KiB messages compress 2.3x alone, whole
conversations 7.4x (DESIGN.md).

Verification: before a chunk counts as warm, its frame is decoded and re-hashed (``verify``),
so a codec bug can never silently replace stored bytes. A group records the BLAKE3 of its plain
bytes; a read decodes the group, checks that one digest (one hash call per 64 KiB instead of one
per chunk: measured 1 GB/s for per-chunk hashing of 2.5 KiB chunks against 2+ GB/s whole) and
keeps the result in a small LRU, so reading a conversation decodes each group once.

Clean copies: a member promoted back to the hot tier leaves its bytes in the frame (as a page
cache keeps a clean page), and the frame stays while any member is warm or such a copy. When
the same chunks are demoted again unchanged (an idle agent that woke, read its history and went
idle again), they are put back into their frame at no compression cost (:meth:`reinstate`).
A group under half the group size is compressed again with what came after it instead, so a
history demoted turn after turn does not end as many small frames. A frame kept only for clean
copies counts in ``physical_bytes`` (it is RAM) but not in ``frame_bytes`` (warm content).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

from agentmem import constants
from agentmem.codec import (
    Dictionary,
    DictionarySet,
    decode_frame,
    encode_frame,
    train_dictionary,
)
from agentmem.errors import CorruptFrame
from agentmem.hashing import chunk_id
from agentmem.ids import short
from agentmem.states import SMUType, Tier
from agentmem.stats import TierStats
from agentmem.store.decoded import DecodedGroups
from agentmem.store.records import ChunkEntry, WarmGroup, place, put_back

log = logging.getLogger("agentmem.store")

Buffer = bytes | bytearray | memoryview


class CodecClock:
    """The CPU a tier spends in the codec: every frame it encodes or decodes goes through here.

    ``process_time`` around each call (~0.5 us a reading, against 5-20 us to decode the
    smallest frame): the daemon reports it (``TieringStats``), which tells what a hardware
    compressor would take off its CPU. Verification's re-hash is not codec time.
    """

    __slots__ = ("decode_seconds", "encode_seconds", "encodes")

    def __init__(self) -> None:
        self.encode_seconds = 0.0
        self.decode_seconds = 0.0
        #: Frames encoded so far.
        self.encodes = 0

    def encode(self, plain: Buffer, *, level: int, dictionary: Dictionary | None = None) -> bytes:
        self.encodes += 1
        t0 = time.process_time()
        try:
            return encode_frame(plain, dictionary=dictionary, level=level)
        finally:
            self.encode_seconds += time.process_time() - t0

    def decode(self, frame: Buffer, dictionaries: DictionarySet) -> bytes:
        t0 = time.process_time()
        try:
            return decode_frame(frame, dictionaries)
        finally:
            self.decode_seconds += time.process_time() - t0


def group_spans(payloads: Sequence[Buffer], limit: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` index ranges of consecutive payloads of at most ``limit`` bytes
    together (a payload larger than ``limit`` is a group of its own)."""
    start = 0
    n = len(payloads)
    while start < n:
        end = start
        raw = 0
        while end < n and (end == start or raw + len(payloads[end]) <= limit):
            raw += len(payloads[end])
            end += 1
        yield start, end
        start = end


class WarmTier:
    """Compressed chunks in RAM. Not thread-safe."""

    tier = Tier.WARM

    def __init__(
        self,
        dictionaries: DictionarySet,
        *,
        level: int = 3,
        levels: dict[SMUType, int] | None = None,
        verify: bool = True,
        group_bytes: int = constants.WARM_GROUP_BYTES,
    ) -> None:
        self.dictionaries = dictionaries
        self.level = level
        #: Per-type levels overriding ``level`` (conversations favour ratio).
        self.levels = dict(levels) if levels else {}
        self.verify = verify
        self.group_bytes = group_bytes
        self._chunks = 0
        self._raw = 0
        self._frames = 0
        self._frame_bytes = 0
        #: Bytes of every frame dropped so far (a counter: the daemon gives the heap back
        #: after enough of them, ``agentmem/heap.py``).
        self.freed_frame_bytes = 0
        self._cache = DecodedGroups()
        # Training material per type until its dictionary is trained: (group, member sizes).
        self._pending: dict[SMUType, list[tuple[WarmGroup, list[int]]]] = {}
        self._pending_raw: dict[SMUType, int] = {}
        self._trained: set[SMUType] = set()
        #: Train dictionaries on a thread of their own (zstd's trainer releases the GIL: its
        #: 0.25-0.5 s for 8 MiB of samples held a daemon's every client once per type); the
        #: dictionary is taken up by the first ``put`` after it is ready. Off for a library
        #: store: the dictionary is there when ``put`` returns (deterministic).
        self.background_training = False
        self._training: dict[SMUType, threading.Thread] = {}
        self._trained_ready: dict[SMUType, Dictionary | None] = {}
        #: CPU seconds in the codec: compressing, and decoding (verification, reads, training).
        self.codec = CodecClock()
        #: Hot entries whose bytes a frame still holds (clean copies) -> that frame's group.
        self.clean: dict[ChunkEntry, WarmGroup] = {}
        self._clean_peak = 0  # most entries ``clean`` held since its table was last rebuilt
        self._shadow_bytes = 0  # frames kept only for clean copies (no warm member)
        #: Plain bytes put back into their frames instead of compressed again (a counter).
        self.reinstated_bytes = 0

    def put(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        """Compress ``payloads`` (plain bytes of ``entries``) into frames; set their locations.

        Raises ``CorruptFrame`` if verification fails; then no entry has been changed.
        """
        if self._trained_ready:
            self.take_trained()
        for start, end in group_spans(payloads, self.group_bytes):
            self._put_group(entries[start:end], payloads[start:end], smu_type)

    def take_trained(self) -> None:
        """Add the dictionaries trained on threads since the last call (loop thread only)."""
        for smu_type in list(self._trained_ready):
            trained = self._trained_ready.pop(smu_type)
            self._training.pop(smu_type, None)
            if trained is not None:
                self.dictionaries.add(trained)

    def wait_training(self) -> None:
        """Wait for the trainings in progress and take their dictionaries (tests, close)."""
        for thread in list(self._training.values()):
            thread.join()
        self.take_trained()

    def _put_group(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        dicts = self.dictionaries
        dictionary = dicts.current(smu_type)
        plain = b"".join(payloads)
        digest = chunk_id(plain)
        level = self.levels.get(smu_type, self.level)
        frame = self.codec.encode(plain, dictionary=dictionary, level=level)
        if self.verify and chunk_id(self.codec.decode(frame, dicts)) != digest:
            raise CorruptFrame(
                f"a new warm frame failed verification (first chunk {short(entries[0].id)})"
            )
        group = WarmGroup(frame, len(plain), digest, len(entries), smu_type)
        if dictionary is None and smu_type is not SMUType.BLOB and smu_type not in self._trained:
            self._await_dictionary(group, [len(p) for p in payloads], smu_type)
        off = 0
        for entry in entries:
            place(entry, group, off)
            off += entry.size
        self._chunks += len(entries)
        self._raw += len(plain)
        self._frames += 1
        self._frame_bytes += len(frame)

    def _await_dictionary(self, group: WarmGroup, sizes: list[int], smu_type: SMUType) -> None:
        """Remember ``group`` as training material; train once a type has enough.

        Samples are the frames themselves, decoded only when training: holding copies of the
        plain bytes until a type reaches ``train_bytes`` (8 MiB) would cost up to that much RAM
        per type in a memory manager; holding the frames costs a pointer each.
        """
        pending = self._pending.setdefault(smu_type, [])
        pending.append((group, sizes))
        total = self._pending_raw.get(smu_type, 0) + group.raw_size
        self._pending_raw[smu_type] = total
        if total < self.dictionaries.train_bytes:
            return
        samples: list[bytes] = []
        for g, member_sizes in pending:
            plain = self.codec.decode(g.frame, self.dictionaries)
            off = 0
            for n in member_sizes:  # members are the natural samples (messages, chunks)
                samples.append(plain[off : off + n])
                off += n
        del self._pending[smu_type], self._pending_raw[smu_type]
        self._trained.add(smu_type)
        size = self.dictionaries.dict_size
        if not self.background_training:
            trained = train_dictionary(samples, smu_type, size)
            if trained is not None:
                self.dictionaries.add(trained)
            return
        ready = self._trained_ready

        def train() -> None:  # on its own thread: reads only its samples
            try:
                ready[smu_type] = train_dictionary(samples, smu_type, size)
            except Exception:
                log.exception("training the %s dictionary failed", smu_type.label)
                ready[smu_type] = None

        thread = threading.Thread(target=train, name=f"agentmem-train-{smu_type.label}")
        thread.daemon = True
        self._training[smu_type] = thread
        thread.start()

    def _plain(self, group: WarmGroup) -> memoryview:
        kept = self._cache.get(group)
        if kept is not None:
            return kept
        plain = self.codec.decode(group.frame, self.dictionaries)
        if chunk_id(plain) != group.digest:
            raise CorruptFrame("a warm frame does not match its digest")
        return self._cache.put(group, plain)

    def view(self, group: WarmGroup, offset: int, length: int) -> memoryview:
        """``length`` plain bytes at ``offset`` of ``group``, decoded and verified.

        The view is over a private decoded buffer (immutable ``bytes``); the caller may keep it.
        Raises ``CorruptFrame`` if the frame does not decode to its digest.
        """
        return self._plain(group)[offset : offset + length]

    def load(self, entry: ChunkEntry) -> memoryview:
        """The chunk's plain bytes, decoded and verified."""
        group = entry.loc
        assert isinstance(group, WarmGroup)
        off = group.starts[entry.at]
        return self._plain(group)[off : off + entry.size]

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
            if group.clean:  # kept for its clean copies
                self._shadow_bytes += len(group.frame)
            else:
                self._drop(group)

    def _drop(self, group: WarmGroup) -> None:
        self.freed_frame_bytes += len(group.frame)
        self._cache.drop(group)

    # --- clean copies ----------------------------------------------------------------------

    def keep_clean(self, entry: ChunkEntry, group: WarmGroup, index: int) -> None:
        """``entry``, member ``index`` of ``group``, was promoted to the hot tier (called
        instead of :meth:`forget`): the frame keeps its bytes as a clean copy."""
        members = group.members
        if members is None:
            members = group.members = [None] * len(group.starts)
        members[index] = entry
        group.clean += 1
        clean = self.clean
        clean[entry] = group
        self._clean_peak = max(self._clean_peak, len(clean))
        self.forget(group, entry.size)

    def _shrink(self) -> None:
        """A dict keeps the table of its largest size: ``clean`` held every message of the
        histories read at once (~50 bytes each: 1.5 million after 100 seed-profile agents'
        turns), so it is rebuilt once it is down to a quarter of that."""
        n = len(self.clean)
        if n < self._clean_peak // 4:
            self.clean = dict(self.clean) if n else {}
            self._clean_peak = n

    def drop_clean(self, entry: ChunkEntry) -> None:
        """``entry`` was freed, or moved otherwise than back into its frame (or is pinned):
        its clean copy no longer counts; a frame left with nothing is dropped."""
        group = self.clean.pop(entry, None)
        if group is None:
            return
        self._shrink()
        group.clean -= 1
        if group.clean:
            return
        group.members = None
        if not group.live:
            self._shadow_bytes -= len(group.frame)
            self._drop(group)

    def hand_over_clean(self, old: ChunkEntry, new: ChunkEntry) -> None:
        """The chunk of ``old`` is ``new``'s now (a message node that was its own chunk's
        entry got an entry of its own, ``conversations.detach``): so is its clean copy.
        O(group members), for a rare event."""
        group = self.clean.pop(old, None)
        if group is None:
            return
        assert group.members is not None
        group.members[group.members.index(old)] = new
        self.clean[new] = group

    def drop_all_clean(self) -> None:
        """Drop every clean copy (their frames' RAM is wanted)."""
        for entry in list(self.clean):
            self.drop_clean(entry)

    def reinstate(self, entries: Sequence[ChunkEntry]) -> list[ChunkEntry]:
        """Put back into their frames the ``entries`` (hot, being demoted to warm) that have a
        clean copy in a group of at least half the group size; returns the others, in order.
        Their offsets are the ones first placed: frames never change."""
        clean = self.clean
        if not clean:
            return list(entries)
        half = self.group_bytes // 2
        wanted: set[ChunkEntry] = set()  # entries hash by identity
        groups: dict[WarmGroup, None] = {}
        for e in entries:
            group = clean.get(e)
            if group is not None and group.raw_size >= half:
                wanted.add(e)
                groups[group] = None
        if not wanted:
            return list(entries)
        back: set[ChunkEntry] = set()
        for group in groups:
            assert group.members is not None
            frame = len(group.frame)
            for i, m in enumerate(group.members):
                if m is None or m not in wanted or clean.get(m) is not group:
                    continue
                del clean[m]
                group.clean -= 1
                if not group.live:  # a frame kept for clean copies holds warm content again
                    self._shadow_bytes -= frame
                    self._frames += 1
                    self._frame_bytes += frame
                group.live += 1
                self._chunks += 1
                self._raw += m.size
                self.reinstated_bytes += m.size
                put_back(m, group, i)
                back.add(m)
            if not group.clean:
                group.members = None
        self._shrink()
        return [e for e in entries if e not in back]

    @property
    def frame_bytes(self) -> int:
        """Bytes of the frames holding warm content (not those kept only for clean copies)."""
        return self._frame_bytes

    @property
    def training_bytes(self) -> int:
        """Bytes of frames whose chunks are all gone, kept as samples until their type's
        dictionary is trained (at most ``train_bytes`` of plain bytes per type, compressed).
        A group is gone from the tier once it holds no warm chunk and no clean copy."""
        return sum(
            len(group.frame)
            for pending in self._pending.values()
            for group, _ in pending
            if not group.live and not group.clean
        )

    @property
    def shadow_bytes(self) -> int:
        """Bytes of the frames kept only for clean copies of hot chunks."""
        return self._shadow_bytes

    def stats(self) -> TierStats:
        return TierStats(
            tier=self.tier.label,
            chunks=self._chunks,
            raw_bytes=self._raw,
            stored_bytes=self._frame_bytes,
            physical_bytes=self._frame_bytes + self._shadow_bytes,
            containers=self._frames,
        )

    def close(self) -> None:
        self._cache.clear()
        self.clean = {}
        self._clean_peak = 0
