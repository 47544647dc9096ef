"""Hot segments: memfd-backed arenas that hold many hot chunks of one domain.

Why memfd and not a bytearray: a segment must be shareable with other processes zero-copy
(sealed, then its fd passed with ``SCM_RIGHTS``) and its pages must be attributable in PSS.

Two mappings per segment, on purpose:

* a writable ``MAP_SHARED`` mapping used only while the segment is open for appends;
* a read-only mapping made through a read-only reopen of the memfd (``/proc/self/fd/N``).

Sealing with ``F_SEAL_WRITE`` fails with ``EBUSY`` while any mapping that *may* become writable
exists, and a ``PROT_READ`` mapping of an ``O_RDWR`` fd counts (it carries ``VM_MAYWRITE``;
measured on this project's 6.x kernels). Mapping the read view from an ``O_RDONLY`` fd avoids
that, so views handed out before sealing stay valid across the seal.

Memory: tmpfs allocates memfd pages on first write, so an open 4 MiB segment costs only what
was appended (rounded to 4 KiB pages).

Not thread-safe. Views returned by :meth:`Segment.view` are read-only ``memoryview`` objects
over the mapping; they stay valid after the segment is retired (the mapping lives until the
last view is released).
"""

from __future__ import annotations

import fcntl
import mmap
import os
from array import array

from agentmem.states import Tier

PAGE = mmap.PAGESIZE

#: Seals of a full segment: no write by anyone, no resize, no further seal change.
SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL

#: ``F_SEAL_FUTURE_WRITE`` (Linux 5.1; not exported by Python 3.11's fcntl): no *new* writable
#: mapping and no ``write()``, while the store's existing writable mapping keeps working.
F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)

#: Seals of a segment shared while still open for appends. Sealing with F_SEAL_WRITE would end
#: the segment at its first share (a conversation's every append would then start a new memfd);
#: FUTURE_WRITE lets the store keep appending to the unused tail through its own mapping while
#: no receiver can write, resize, map it writable, mprotect its mapping writable, or unseal it
#: (each refused with EPERM, tested in tests/daemon/test_isolation.py).
SHARE_SEALS = F_SEAL_FUTURE_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


class Segment:
    """A fixed-capacity memfd arena; chunks are appended, never moved or overwritten."""

    tier = Tier.HOT

    __slots__ = (
        "_rmap",
        "_rview",
        "_wmap",
        "capacity",
        "exclusive",
        "fd",
        "live_bytes",
        "live_chunks",
        "owner",
        "pool",
        "seg_id",
        "shared",
        "starts",
        "used",
    )

    def __init__(
        self,
        seg_id: int,
        capacity: int,
        *,
        pool: str = "private",
        exclusive: bool = False,
        owner: int = 0,
    ) -> None:
        if capacity <= 0:
            raise ValueError("segment capacity must be > 0")
        capacity = -(-capacity // PAGE) * PAGE
        self.seg_id = seg_id
        #: ``shared``, ``private``, ``owned`` or ``far`` (see ``store.hot``).
        self.pool = pool
        #: Holds the content of one allocation and nothing else.
        self.exclusive = exclusive
        #: The conversation handle whose messages these are (pool ``owned``, ``store.hot``), the
        #: only one that may map it; 0: no owner (every other pool, and a released owner's).
        self.owner = owner
        self.capacity = capacity
        self.used = 0
        #: Bytes of chunks still referenced; the segment can be retired when it reaches 0.
        self.live_bytes = 0
        #: Live chunks placed here. Emptiness is judged by this, not by ``live_bytes``: a live
        #: 0-byte chunk (an empty message) keeps its segment as surely as any other.
        self.live_chunks = 0
        #: True once sealed for sharing (:meth:`share`): its fd may leave the process.
        self.shared = False
        #: Offsets of the chunks placed here, in placement order (``records.place``): 4 bytes
        #: a chunk instead of an int object of 28.
        self.starts = array("I")
        self.fd = os.memfd_create(f"agentmem-seg-{seg_id}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, capacity)
            self._wmap: mmap.mmap | None = mmap.mmap(
                self.fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
            rofd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._rmap = mmap.mmap(rofd, capacity, mmap.MAP_SHARED, mmap.PROT_READ)
            finally:
                os.close(rofd)
        except BaseException:
            os.close(self.fd)
            raise
        self._rview = memoryview(self._rmap)

    @property
    def sealed(self) -> bool:
        """True once the segment is immutable (no further appends, shareable)."""
        return self._wmap is None

    @property
    def free(self) -> int:
        """Bytes still available for appends (0 once sealed)."""
        return 0 if self._wmap is None else self.capacity - self.used

    def append(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` in; return its offset, or -1 when it does not fit (or sealed).

        -1 rather than an exception: a full segment is the normal case on the ingest path.
        """
        wmap = self._wmap
        n = len(data)
        off = self.used
        if wmap is None or off + n > self.capacity:
            return -1
        wmap[off : off + n] = data
        self.used = off + n
        self.live_bytes += n
        self.live_chunks += 1
        return off

    def view(self, offset: int, length: int) -> memoryview:
        """A read-only, zero-copy view of ``length`` bytes at ``offset``."""
        return self._rview[offset : offset + length]

    def seal(self) -> None:
        """Drop the writable mapping and seal the memfd. Idempotent.

        After this the segment's fd may be passed to other processes: they can map it read-only
        and nobody, the store included, can change its bytes.
        """
        if self._wmap is None:
            return
        self._wmap.close()
        self._wmap = None
        if not self.shared:  # a shared segment's seals are final already (F_SEAL_SEAL)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, SEALS)

    def share(self) -> int:
        """Seal the memfd against every writer but the store's own mapping; return the fd.

        Idempotent. After this the fd may be passed to other processes, which can only map it
        read-only. A segment that was :meth:`seal`-ed already is shareable as is.
        """
        if not self.shared:
            if self._wmap is not None:
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, SHARE_SEALS)
            self.shared = True
        return self.fd

    @property
    def view_all(self) -> memoryview:
        """A read-only view of the whole segment (for in-process sharing)."""
        return self._rview

    def resident_bytes(self) -> int:
        """Bytes of the memfd backed by memory (pages touched), from its allocated blocks."""
        return os.fstat(self.fd).st_blocks * 512

    def close(self) -> None:
        """Release the fd and the store's mappings. Outstanding views keep their pages alive."""
        if self._wmap is not None:
            self._wmap.close()
            self._wmap = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        # Not self._rmap.close(): views exported to callers would raise BufferError. The
        # mapping is unmapped when the last view and this object are gone.
        self._rview.release()
