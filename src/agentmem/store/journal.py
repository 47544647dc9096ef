"""The journal: conversations written ahead to disk, so an acknowledged append survives a crash.

One append-only file per domain (``journal.amj``, ``docs/formats.md``): a file header, then
records of four kinds, each ``<2sBBIQ32s`` (magic ``AJ``, kind, flags, data length, handle,
check) followed by its data:

* ``CONV``: a new, empty conversation ``handle`` of the agent named by the data;
* ``APPEND``: the data is one message appended to ``handle``; ``check`` is the message's chunk
  id (BLAKE3 of the data, which the store computes anyway);
* ``FORK``: ``handle`` is a new conversation at the tip of the one whose handle is the data's
  first 8 bytes, for the agent named by the rest;
* ``DROP``: ``handle`` was released.

For the other kinds ``check`` is the BLAKE3 of the data. Replay stops at the first record that
does not verify and cuts the file there: a crash can tear only the tail, which was never
acknowledged.

Durability (``Config.durable_sync``):

* strict (default): the daemon replies to an append only after ``fdatasync`` of the journal.
  Appends that arrive together share one ``fdatasync`` (group commit: the server syncs once per
  batch of requests it read, then sends their replies).
* relaxed (``agentmem daemon --durability relaxed``): records are written (``write(2)``) before
  the reply, and synced once a second. A daemon crash loses nothing (the kernel has the bytes);
  a power loss or kernel crash loses up to the last second of acknowledged appends.

Compaction: when the file has grown past ``Config.journal_rewrite_min_bytes`` (64 MiB) and
twice what the live conversations hold, it is rewritten (to a new file, fsync'ed, renamed over
the old one) as one ``CONV`` and its ``APPEND`` records per live conversation; in steps
between requests, the records written meanwhile copied after them
(:meth:`Journal.rewrite_steps`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import struct
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Final

from agentmem.errors import CorruptFrame, DiskFull
from agentmem.hashing import chunk_id
from agentmem.ids import Handle
from agentmem.store import steps

log = logging.getLogger("agentmem.store")

JOURNAL_MAGIC: Final = b"AMJL"
JOURNAL_VERSION: Final = 1
FILE_HEADER: Final = struct.Struct("<4sB3x")
RECORD: Final = struct.Struct("<2sBBIQ32s")
RECORD_MAGIC: Final = b"AJ"

CONV: Final = 1
APPEND: Final = 2
FORK: Final = 3
DROP: Final = 4
_KINDS: Final = frozenset({CONV, APPEND, FORK, DROP})
_HANDLE: Final = struct.Struct("<Q")

#: Parts (a record's header or data) written by one ``pwritev``: under the kernel's IOV_MAX
#: of 1024.
_IOV_PARTS: Final = 512
#: Bytes read at a time when a rewrite copies the records written while it went on, and
#: written between two syncs of the new file (its last step's sync of 43 MB took 40 ms here).
_COPY_BYTES: Final = 8 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One replayed record."""

    kind: int
    handle: Handle
    data: bytes
    check: bytes


class Journal:
    """The domain's journal file. Not thread-safe."""

    def __init__(self, path: str, *, durable_sync: bool = True) -> None:
        self.path = path
        self.durable_sync = durable_sync
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size
        #: Written since the last sync.
        self.dirty = False
        #: Records cut from a torn tail, and bytes cut, at replay.
        self.truncated_bytes = 0
        #: ``DROP`` records that could not be written (those conversations come back, as
        #: orphans, after a crash; they are released again when unclaimed).
        self.lost_drops = 0
        #: Records skipped at replay because their bytes no longer match their checksum.
        self.bad_records = 0
        self.syncs = 0
        #: CPU seconds spent in those syncs (the kernel writing the records out).
        self.sync_seconds = 0.0
        #: Records queued by :meth:`add` (header, data, header, data, ...).
        self._pending: list[bytes | bytearray | memoryview] = []
        if self.size == 0:
            self._write((FILE_HEADER.pack(JOURNAL_MAGIC, JOURNAL_VERSION),))
            self.sync(force=True)

    # --- replay ----------------------------------------------------------------------------

    def replay(self) -> Iterator[Record]:
        """The records in order. A torn tail (a record that does not parse, or the last one
        not matching its checksum) is cut off; a whole record damaged in place is skipped and
        counted in ``bad_records``; both are logged."""
        head = os.pread(self.fd, FILE_HEADER.size, 0)
        if len(head) < FILE_HEADER.size or FILE_HEADER.unpack(head) != (
            JOURNAL_MAGIC,
            JOURNAL_VERSION,
        ):
            raise CorruptFrame(f"{self.path} is not a version-{JOURNAL_VERSION} agentmem journal")
        pos = FILE_HEADER.size
        size = self.size
        while pos < size:
            raw = os.pread(self.fd, RECORD.size, pos)
            end = -1
            if len(raw) == RECORD.size:
                magic, kind, _flags, length, handle, check = RECORD.unpack(raw)
                if magic == RECORD_MAGIC and kind in _KINDS and pos + RECORD.size + length <= size:
                    end = pos + RECORD.size + length
            if end < 0:
                log.warning(
                    "journal %s: cutting %d bytes of torn tail at %d", self.path, size - pos, pos
                )
                os.ftruncate(self.fd, pos)
                self.truncated_bytes += size - pos
                self.size = pos
                os.fsync(self.fd)
                return
            data = os.pread(self.fd, end - pos - RECORD.size, pos + RECORD.size)
            if chunk_id(data) == check:
                yield Record(kind, Handle(handle), data, check)
            elif end == size:  # the last record, half written: a torn tail after all
                os.ftruncate(self.fd, pos)
                self.truncated_bytes += size - pos
                self.size = pos
                os.fsync(self.fd)
                return
            else:  # damaged in place (the bytes changed since): skip it, keep the rest
                self.bad_records += 1
                log.error("journal %s: record at %d does not match its checksum", self.path, pos)
            pos = end

    # --- writing ---------------------------------------------------------------------------

    def conv(self, handle: int, agent: str) -> None:
        data = agent.encode()
        self._record(CONV, handle, data, chunk_id(data))

    def append(self, handle: int, check: bytes, message: bytes | bytearray | memoryview) -> None:
        """Log one message of ``handle``; ``check`` is its chunk id."""
        self._record(APPEND, handle, message, check)

    def add(self, handle: int, check: bytes, message: bytes | bytearray | memoryview) -> None:
        """Queue one message of ``handle`` for :meth:`flush` (nothing is written yet).

        Why: one record and one ``pwritev`` a message cost ~4 us of the ~27 us an append
        takes in the store (a 64-message ``extend``, 2 KiB messages, measured with cProfile);
        a batch goes out in one ``pwritev`` per ``_IOV_PARTS`` parts. The caller owns
        ``message`` and keeps it unchanged until the flush, which it must call before anything
        else is written (a sync included)."""
        self._pending += (_header(APPEND, handle, message, check), message)

    def drop_pending(self) -> None:
        """Forget the queued records (their appends were taken back)."""
        self._pending = []

    def flush(self) -> None:
        """Write the queued records, all or none: on ``DiskFull`` the file is cut back to where
        the batch began and the queue is dropped (the caller takes its appends back)."""
        parts, self._pending = self._pending, []
        start = self.size
        try:
            for i in range(0, len(parts), _IOV_PARTS):
                self._write(tuple(parts[i : i + _IOV_PARTS]))
        except DiskFull:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)
            self.size = start
            raise

    def fork(self, handle: int, source: int, agent: str) -> None:
        data = _HANDLE.pack(source) + agent.encode()
        self._record(FORK, handle, data, chunk_id(data))

    def drop(self, handle: int) -> None:
        """Log a release; a failure is counted, not raised (see ``lost_drops``)."""
        try:
            self._record(DROP, handle, b"", chunk_id(b""))
        except DiskFull as exc:
            self.lost_drops += 1
            log.error("journal: %s", exc)

    def _record(
        self, kind: int, handle: int, data: bytes | bytearray | memoryview, check: bytes
    ) -> None:
        self._write((_header(kind, handle, data, check), data))

    def _write(self, parts: tuple[bytes | bytearray | memoryview, ...]) -> None:
        total = sum(len(p) for p in parts)
        try:
            done = os.pwritev(self.fd, parts, self.size)
            while done < total:  # a short write (rare on a regular file): finish it
                rest = b"".join(bytes(p) for p in parts)[done:]
                done += os.pwrite(self.fd, rest, self.size + done)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)  # never leave half a record behind
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFull(f"journal {self.path}: {exc.strerror}; not stored") from exc
            raise DiskFull(f"journal {self.path}: write failed: {exc}; not stored") from exc
        self.size += total
        self.dirty = True

    def sync(self, *, force: bool = False) -> bool:
        """Make written records durable: ``fdatasync`` if anything was written since the last
        sync (in relaxed mode only when ``force``). Returns True if it synced."""
        if not self.dirty or not (self.durable_sync or force):
            return False
        t0 = time.process_time()
        os.fdatasync(self.fd)
        self.sync_seconds += time.process_time() - t0
        self.dirty = False
        self.syncs += 1
        return True

    # --- compaction ------------------------------------------------------------------------

    def rewrite(self, records: Iterable[tuple[int, int, bytes | memoryview, bytes]]) -> int:
        """Replace the file with ``records`` ((kind, handle, data, check) in replay order);
        returns bytes saved. Written to a new file, synced and renamed over the old one, so a
        crash at any point leaves one whole journal. Raises ``DiskFull`` (the old one stays)."""
        return steps.run(self.rewrite_steps(records))

    def rewrite_steps(
        self,
        records: Iterable[tuple[int, int, bytes | memoryview, bytes]],
        *,
        keep: Callable[[set[int]], bool] | None = None,
    ) -> Generator[None, None, int]:
        """:meth:`rewrite` in steps (one ``pwritev`` of ``_IOV_PARTS`` parts each), for an
        owner that goes on writing between them: the records this journal gets meanwhile
        (at its end) follow ``records`` in the new file, copied as they are when the last
        step swaps the files, so ``records`` must replay as the file did when the rewrite
        began. ``keep(sources)``, with the handles that the records written meanwhile fork
        from: False abandons the rewrite (the owner's ``records`` may lack a conversation
        such a fork needs); it then returns 0 and the old file stays, as it does when the
        generator is closed before its end. Raises ``DiskFull`` (the old one stays).

        The rewrite begins with this call, not at the first step: what is written before
        that step is among the records copied after ``records``."""
        return self._rewrite_steps(records, keep, self.size)

    def _rewrite_steps(
        self,
        records: Iterable[tuple[int, int, bytes | memoryview, bytes]],
        keep: Callable[[set[int]], bool] | None,
        start: int,
    ) -> Generator[None, None, int]:
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        size = 0
        swapped = False
        try:
            try:
                chunks: list[bytes | memoryview] = [
                    FILE_HEADER.pack(JOURNAL_MAGIC, JOURNAL_VERSION)
                ]
                synced = 0
                for kind, handle, data, check in records:
                    chunks.append(_header(kind, handle, data, check))
                    chunks.append(data)
                    if len(chunks) >= _IOV_PARTS:
                        size += _write_all(fd, chunks, size)
                        chunks = []
                        if size - synced >= _COPY_BYTES:  # the last step's sync stays short
                            os.fdatasync(fd)
                            synced = size
                        yield
                size += _write_all(fd, chunks, size)
                forks = self._fork_sources(start, self.size) if keep is not None else set()
                if keep is not None and self.size > start and not keep(forks):
                    return 0
                pos = start
                while pos < self.size:  # what came meanwhile, as it is
                    piece = os.pread(self.fd, min(_COPY_BYTES, self.size - pos), pos)
                    if not piece:
                        raise OSError(errno.EIO, "the journal ended before its size")
                    size += _write_all(fd, [piece], size)
                    pos += len(piece)
                os.fsync(fd)
                os.rename(tmp, self.path)
            except OSError as exc:
                raise DiskFull(f"journal {self.path}: rewrite failed: {exc}") from exc
            old_size = self.size
            os.close(self.fd)
            self.fd, self.size, self.dirty = fd, size, False
            swapped = True
        finally:
            if not swapped:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        try:
            _fsync_dir(os.path.dirname(self.path) or ".")
        except OSError as exc:  # the new file is the journal now, synced; only its name waits
            log.error("journal %s: syncing its directory failed: %s", self.path, exc)
        return old_size - size

    def _fork_sources(self, start: int, end: int) -> set[int]:
        """Source handles of the ``FORK`` records in ``[start, end)`` (records this journal
        wrote itself: whole, in order)."""
        sources: set[int] = set()
        pos = start
        while pos < end:
            _magic, kind, _flags, length, _handle, _check = RECORD.unpack(
                os.pread(self.fd, RECORD.size, pos)
            )
            if kind == FORK:
                data = os.pread(self.fd, _HANDLE.size, pos + RECORD.size)
                sources.add(_HANDLE.unpack(data)[0])
            pos += RECORD.size + length
        return sources

    def close(self) -> None:
        if self.fd >= 0:
            if self.dirty:
                os.fdatasync(self.fd)
            os.close(self.fd)
            self.fd = -1


def _header(kind: int, handle: int, data: bytes | bytearray | memoryview, check: bytes) -> bytes:
    """The ``RECORD`` header of a record of ``kind`` whose data is ``data``."""
    return RECORD.pack(RECORD_MAGIC, kind, 0, len(data), handle, check)


def _write_all(fd: int, parts: list[bytes | memoryview], at: int) -> int:
    total = sum(len(p) for p in parts)
    done = os.pwritev(fd, parts, at) if parts else 0
    if done < total:
        rest = b"".join(bytes(p) for p in parts)[done:]
        while done < total:
            n = os.pwrite(fd, rest, at + done)
            rest = rest[n:]
            done += n
    return total


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
