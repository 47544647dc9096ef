"""The cold tier: chunks compressed in append-only pack files on disk.

A pack (``pack-<seq>.amp``) is a file header followed by records, each one group of chunks
compressed as one codec frame (``docs/formats.md``): a header with the group's BLAKE3 digest
and a CRC of the header and member table, the member table (chunk id and size of each chunk,
in order), and the frame. Frames are compressed without a dictionary, so a pack stays readable
by a daemon that has not trained the dictionaries of the one that wrote it (on the corpus's
conversations, 256 KiB groups: 8.20x without dictionaries, 8.11x with them).

Checks: a new frame is decoded and re-hashed before its chunks count as cold; a read verifies
the record's CRC, decodes the frame and checks the group digest (one hash for the group, whose
members were each hashed against their ids when they entered the store); ``check`` re-hashes
every member against its id.

Packs are written without fsync: they hold a copy of what the daemon holds anyway (a
conversation's messages are durable in the journal, not here). On start, :meth:`ColdTier.scan`
rebuilds the index of what earlier packs hold, truncating a torn tail, so content restored
from the journal whose chunks are already in a pack is placed cold without being rewritten.

Space: a pack is appended to until it reaches ``pack_bytes``; one whose live records fall to
half of it or less is compacted (live records copied to the current pack, the file deleted);
one with nothing live is deleted at once.

Errors: a full disk raises ``DiskFull`` and leaves the content where it was (the pack is cut
back to its last whole record); an unreadable record raises ``PackUnreadable`` for the chunks
of that record only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import zlib
from array import array
from collections.abc import Sequence
from typing import Final

from agentmem import constants
from agentmem.codec import DictionarySet
from agentmem.errors import CorruptFrame, DiskFull, PackUnreadable
from agentmem.hashing import chunk_id
from agentmem.ids import ChunkId, short
from agentmem.states import SMUType, Tier
from agentmem.stats import TierStats
from agentmem.store.decoded import DecodedGroups
from agentmem.store.records import ChunkEntry, place
from agentmem.store.warm import CodecClock, group_spans

log = logging.getLogger("agentmem.store")

Buffer = bytes | bytearray | memoryview

PACK_MAGIC: Final = b"AMPK"
PACK_VERSION: Final = 1
#: File header: magic, version, 3 reserved bytes.
FILE_HEADER: Final = struct.Struct("<4sB3x")
#: Record header: magic ``AR``, SMU type, flags (0), member count, frame length, CRC-32 of the
#: header's other fields and the member table, BLAKE3 of the group's plain bytes.
RECORD: Final = struct.Struct("<2sBBIII32s")
RECORD_MAGIC: Final = b"AR"
#: One member: chunk id and size.
MEMBER: Final = struct.Struct("<32sI")
#: A pack is closed for appends past this size.
PACK_BYTES: Final = 64 << 20


class Pack:
    """One pack file and what of it is still live."""

    __slots__ = ("fd", "groups", "live_bytes", "path", "seq", "size")

    def __init__(self, seq: int, path: str, fd: int, size: int) -> None:
        self.seq = seq
        self.path = path
        self.fd = fd
        self.size = size
        #: Bytes of records with at least one live member.
        self.live_bytes = 0
        self.groups: list[ColdGroup] = []


class ColdGroup:
    """One record of a pack: a frame holding the plain bytes of one or more chunks."""

    tier = Tier.COLD

    __slots__ = ("digest", "length", "live", "offset", "pack", "raw_size", "smu_type", "starts")

    def __init__(
        self, pack: Pack, offset: int, length: int, raw_size: int, digest: bytes, *, smu_type: int
    ) -> None:
        self.pack = pack
        #: File offset of the record header, and the record's whole length.
        self.offset = offset
        self.length = length
        self.raw_size = raw_size
        self.digest = digest
        self.smu_type = smu_type
        #: Member chunks still referenced.
        self.live = 0
        #: Offsets in the plain bytes of the members placed here (``records.place``).
        self.starts = array("I")


class ColdTier:
    """Compressed chunks in pack files under ``directory``. Not thread-safe."""

    tier = Tier.COLD

    def __init__(
        self,
        directory: str,
        dictionaries: DictionarySet,
        *,
        level: int = 3,
        group_bytes: int = constants.WARM_GROUP_BYTES,
        pack_bytes: int = PACK_BYTES,
        verify: bool = True,
    ) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self.dictionaries = dictionaries
        self.level = level
        self.group_bytes = group_bytes
        self.pack_bytes = pack_bytes
        self.verify = verify
        self.packs: dict[int, Pack] = {}
        self._current: Pack | None = None
        self._chunks = 0
        self._raw = 0
        self._cache = DecodedGroups()
        #: What earlier packs hold, by chunk id (filled by :meth:`scan`, emptied by
        #: :meth:`end_scan`): (group, offset in its plain bytes).
        self.index: dict[ChunkId, tuple[ColdGroup, int]] = {}
        #: Bytes cut from torn pack tails at start, and records found unreadable then.
        self.truncated_bytes = 0
        self.bad_records = 0
        #: CPU seconds in the codec (compressing, verifying, reading back).
        self.codec = CodecClock()

    # --- start -----------------------------------------------------------------------------

    def scan(self) -> int:
        """Index the records of the packs already in the directory; return records indexed.

        A record that does not parse or fails its CRC ends the pack: the file is cut back to
        the last whole record (a tail torn by a crash; packs are not fsync'ed).
        """
        found = 0
        for name in sorted(os.listdir(self.directory)):
            if not (name.startswith("pack-") and name.endswith(".amp")):
                continue
            try:
                seq = int(name[5:-4])
            except ValueError:
                continue
            path = os.path.join(self.directory, name)
            try:
                found += self._scan_pack(seq, path)
            except OSError as exc:
                self.bad_records += 1
                log.error("cold tier: cannot read %s: %s (skipped)", path, exc)
        return found

    def _scan_pack(self, seq: int, path: str) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        size = os.fstat(fd).st_size
        head = os.pread(fd, FILE_HEADER.size, 0)
        if len(head) < FILE_HEADER.size or FILE_HEADER.unpack(head) != (PACK_MAGIC, PACK_VERSION):
            os.close(fd)
            self.bad_records += 1
            log.error("cold tier: %s is not a version-%d pack (skipped)", path, PACK_VERSION)
            return 0
        pack = Pack(seq, path, fd, size)
        self.packs[seq] = pack
        pos = FILE_HEADER.size
        found = 0
        while pos < size:
            parsed = self._parse_at(pack, pos, size)
            if parsed is None:
                log.warning(
                    "cold tier: %s: cutting %d bytes of torn tail at %d", path, size - pos, pos
                )
                os.ftruncate(fd, pos)
                self.truncated_bytes += size - pos
                pack.size = size = pos
                break
            group, members, end = parsed
            off = 0
            for cid, n in members:
                self.index.setdefault(cid, (group, off))
                off += n
            pack.groups.append(group)
            pos = end
            found += 1
        return found

    def _parse_at(
        self, pack: Pack, pos: int, size: int
    ) -> tuple[ColdGroup, list[tuple[ChunkId, int]], int] | None:
        head = os.pread(pack.fd, RECORD.size, pos)
        if len(head) < RECORD.size:
            return None
        magic, smu_type, _flags, count, frame_len, crc, digest = RECORD.unpack(head)
        table_len = count * MEMBER.size
        end = pos + RECORD.size + table_len + frame_len
        if magic != RECORD_MAGIC or count == 0 or end > size:
            return None
        table = os.pread(pack.fd, table_len, pos + RECORD.size)
        if len(table) < table_len or zlib.crc32(table, zlib.crc32(head[:12])) != crc:
            return None
        members = [(ChunkId(cid), n) for cid, n in MEMBER.iter_unpack(table)]
        raw = sum(n for _, n in members)
        return ColdGroup(pack, pos, end - pos, raw, digest, smu_type=smu_type), members, end

    def claim(self, cid: ChunkId, entry: ChunkEntry) -> bool:
        """Place ``entry`` at the scanned copy of its chunk, if an earlier pack holds one."""
        hit = self.index.get(cid)
        if hit is None:
            return False
        group, off = hit
        if group.live == 0:
            group.pack.live_bytes += group.length
        group.live += 1
        place(entry, group, off)
        self._chunks += 1
        self._raw += entry.size
        return True

    def end_scan(self) -> int:
        """Forget the scan's index; delete packs of which nothing was claimed; return packs
        deleted."""
        self.index = {}
        dead = [p for p in self.packs.values() if p.live_bytes == 0 and p is not self._current]
        for pack in dead:
            self._delete(pack)
        for pack in self.packs.values():
            pack.groups = [g for g in pack.groups if g.live]
        return len(dead)

    # --- writing ---------------------------------------------------------------------------

    def put(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        """Write ``payloads`` (plain bytes of ``entries``) as records; set their locations.

        Raises ``DiskFull`` (the pack is cut back; entries not yet placed keep their location)
        or ``CorruptFrame`` if a new frame fails verification.
        """
        for start, end in group_spans(payloads, self.group_bytes):
            self._put_group(entries[start:end], payloads[start:end], smu_type)

    def _put_group(
        self, entries: Sequence[ChunkEntry], payloads: Sequence[Buffer], smu_type: SMUType
    ) -> None:
        plain = b"".join(payloads)
        digest = chunk_id(plain)
        frame = self.codec.encode(plain, level=self.level)
        if self.verify and chunk_id(self.codec.decode(frame, self.dictionaries)) != digest:
            raise CorruptFrame(
                f"a new cold frame failed verification (first chunk {short(entries[0].id)})"
            )
        table = b"".join(MEMBER.pack(e.id, e.size) for e in entries)
        fields = RECORD.pack(RECORD_MAGIC, smu_type, 0, len(entries), len(frame), 0, digest)
        crc = zlib.crc32(table, zlib.crc32(fields[:12]))
        head = RECORD.pack(RECORD_MAGIC, smu_type, 0, len(entries), len(frame), crc, digest)
        pack = self._pack_for_append()
        offset = pack.size
        self._write(pack, (head, table, frame))
        group = ColdGroup(pack, offset, pack.size - offset, len(plain), digest, smu_type=smu_type)
        group.live = len(entries)
        pack.live_bytes += group.length
        pack.groups.append(group)
        off = 0
        for entry in entries:
            place(entry, group, off)
            off += entry.size
        self._chunks += len(entries)
        self._raw += len(plain)

    def _pack_for_append(self) -> Pack:
        pack = self._current
        if pack is not None and pack.size < self.pack_bytes:
            return pack
        seq = max(self.packs, default=0) + 1
        path = os.path.join(self.directory, f"pack-{seq:08d}.amp")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        pack = Pack(seq, path, fd, 0)
        try:
            self._write(pack, (FILE_HEADER.pack(PACK_MAGIC, PACK_VERSION),))
        except DiskFull:
            os.close(fd)
            os.unlink(path)
            raise
        self.packs[seq] = pack
        old, self._current = self._current, pack
        if old is not None and old.live_bytes == 0:
            self._delete(old)
        return pack

    def _write(self, pack: Pack, parts: tuple[bytes, ...]) -> None:
        total = sum(len(p) for p in parts)
        data = b"".join(parts) if len(parts) > 1 else parts[0]
        done = 0
        try:
            while done < total:
                done += os.pwrite(pack.fd, memoryview(data)[done:], pack.size + done)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(pack.fd, pack.size)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFull(f"cold tier: cannot write {pack.path}: {exc.strerror}") from exc
            raise DiskFull(f"cold tier: writing {pack.path} failed: {exc}") from exc
        pack.size += total

    # --- reading ---------------------------------------------------------------------------

    def _plain(self, group: ColdGroup) -> memoryview:
        kept = self._cache.get(group)
        if kept is not None:
            return kept
        pack = group.pack
        where = f"{os.path.basename(pack.path)} at {group.offset}"
        try:
            record = os.pread(pack.fd, group.length, group.offset)
        except OSError as exc:
            raise PackUnreadable(f"cold tier: reading {where}: {exc}") from exc
        if len(record) != group.length:
            raise PackUnreadable(f"cold tier: {where}: short read")
        magic, _t, _f, count, frame_len, crc, digest = RECORD.unpack_from(record)
        table_end = RECORD.size + count * MEMBER.size
        if (
            magic != RECORD_MAGIC
            or digest != group.digest
            or zlib.crc32(record[RECORD.size : table_end], zlib.crc32(record[:12])) != crc
        ):
            raise PackUnreadable(f"cold tier: {where}: bad record header")
        try:
            plain = self.codec.decode(record[table_end : table_end + frame_len], self.dictionaries)
        except CorruptFrame as exc:
            raise PackUnreadable(f"cold tier: {where}: {exc}") from exc
        if chunk_id(plain) != group.digest:
            raise PackUnreadable(f"cold tier: {where}: frame does not match its digest")
        return self._cache.put(group, plain)

    def view(self, group: ColdGroup, offset: int, length: int) -> memoryview:
        """``length`` plain bytes at ``offset`` of ``group``, read, decoded and verified."""
        return self._plain(group)[offset : offset + length]

    def load(self, entry: ChunkEntry) -> memoryview:
        group = entry.loc
        assert isinstance(group, ColdGroup)
        off = group.starts[entry.at]
        return self._plain(group)[off : off + entry.size]

    # --- freeing ---------------------------------------------------------------------------

    def forget(self, group: ColdGroup, size: int) -> None:
        """A chunk of ``size`` bytes in ``group`` is no longer held here (freed or moved)."""
        group.live -= 1
        self._chunks -= 1
        self._raw -= size
        if group.live:
            return
        self._cache.drop(group)
        pack = group.pack
        pack.live_bytes -= group.length
        if pack.live_bytes == 0 and pack is not self._current and pack.seq in self.packs:
            self._delete(pack)

    def _delete(self, pack: Pack) -> None:
        self.packs.pop(pack.seq, None)
        os.close(pack.fd)
        try:
            os.unlink(pack.path)
        except OSError as exc:
            log.error("cold tier: cannot delete %s: %s", pack.path, exc)

    def compact(self, max_live_ratio: float = 0.5) -> int:
        """Copy the live records of sparse packs to the current one and delete them; return
        bytes of disk reclaimed. Raises ``DiskFull`` (packs not yet copied stay as they are)."""
        reclaimed = 0
        for pack in list(self.packs.values()):
            if pack is self._current or pack.live_bytes > max_live_ratio * pack.size:
                continue
            for group in pack.groups:
                if not group.live:
                    continue
                record = os.pread(pack.fd, group.length, group.offset)
                target = self._pack_for_append()
                offset = target.size
                self._write(target, (record,))
                self._cache.drop(group)
                group.pack, group.offset = target, offset
                target.live_bytes += group.length
                target.groups.append(group)
            reclaimed += pack.size
            self._delete(pack)
        return reclaimed

    # --- accounting ------------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        """Bytes of the pack files."""
        return sum(p.size for p in self.packs.values())

    def stats(self) -> TierStats:
        return TierStats(
            tier=self.tier.label,
            chunks=self._chunks,
            raw_bytes=self._raw,
            stored_bytes=sum(p.live_bytes for p in self.packs.values()),
            physical_bytes=self.disk_bytes,
            containers=len(self.packs),
        )

    def close(self) -> None:
        self._cache.clear()
        for pack in self.packs.values():
            os.close(pack.fd)
        self.packs.clear()
        self._current = None
