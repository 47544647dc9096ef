"""Frames over a Unix stream socket, with file descriptors passed by ``SCM_RIGHTS``.

The only socket code of the protocol layer. It is transport-neutral: failures surface as the
``OSError`` the kernel reported (the client maps it to ``DaemonUnavailable``, the daemon closes
the connection), and protocol violations as :class:`~agentmem.errors.ProtocolError`.

How fds are matched to frames
-----------------------------
A sender attaches a frame's fds to the frame's *first byte*: one ``sendmsg`` carries the start of
the frame and the fds (FLAG_FDS set in its header); the rest of the frame follows in plain
sends. On a ``SOCK_STREAM`` Unix socket the kernel delivers ancillary data with the first
``recvmsg`` that returns a byte of the segment it rode on, and never returns data from beyond
that segment in the same call. So every fd group a ``recvmsg`` yields belongs to a frame that
*starts* inside the bytes that same call returned, and at most one frame-with-fds starts there.

:class:`FdInbox` applies that rule with stream offsets (``Frame.offset``): a frame with FLAG_FDS
takes the group that arrived with its first byte; a group nobody claims, because no frame starts
in its bytes or the frame that does has no FLAG_FDS, is closed at once. At most one group is
ever held unclaimed (the one riding with the start of the incomplete frame), so a peer cannot
make the receiver hoard descriptors, and every received fd is either handed to the caller or
closed.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
from collections import namedtuple
from collections.abc import Callable, Sequence

from agentmem.errors import ProtocolError
from agentmem.protocol.framing import FLAG_FDS, HEADER, Frame, FrameDecoder

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Final, NamedTuple

__all__ = [
    "MAX_FDS_PER_FRAME",
    "RECV_BYTES",
    "UCRED",
    "FdInbox",
    "Received",
    "peer_credentials",
    "recv_frames",
    "recv_some",
    "send_frame",
]

#: Most fds one frame may carry. A hot segment is 4 MiB, so 64 segments (256 MiB of content)
#: fit one reply; larger SMUs are read in several. The kernel's own cap is 253 (SCM_MAX_FD).
#: Receiving reserves CMSG_SPACE(64 * 4) = 272 bytes of control buffer per call.
MAX_FDS_PER_FRAME: Final = 64

#: Bytes asked of one ``recvmsg``: 64 KiB takes a typical request (< 2 KiB) or a 64-message
#: reply in one call, and a 16 MiB frame in 256 calls (~3.5 ms for 16 MiB through the socket).
RECV_BYTES: Final = 64 << 10

UCRED: Final = struct.Struct(
    "i"  # pid_t pid: the peer's process id when it connected
    "I"  # uid_t uid: unsigned in the kernel, so "I" (a uid above 2**31 stays positive)
    "I"  # gid_t gid
)
"""``struct ucred`` as SO_PEERCRED returns it (native layout, 12 bytes)."""

_INT_SIZE: Final = array.array("i").itemsize
_HEADER_SIZE: Final = HEADER.size


def send_frame(sock: socket.socket, frame: bytes, fds: Sequence[int] = ()) -> None:
    """Send one encoded frame, with ``fds`` riding on its first byte; block until all is sent.

    ``frame`` comes from :func:`~agentmem.protocol.framing.encode`, with ``fds=True`` exactly
    when ``fds`` is non-empty (else ``ValueError``). The fds stay owned by the caller: the kernel
    duplicates them into the peer, so the caller may close its copies once this returns.
    ``sock`` must be a blocking (or timeout) ``AF_UNIX`` stream socket. Raises ``OSError`` from
    the kernel; after an ``OSError`` (a timeout included) part of the frame may be on the wire, so
    the connection must be closed. Not thread-safe: one sender per socket at a time.
    """
    if len(frame) < _HEADER_SIZE:
        raise ValueError(f"a frame is at least {HEADER.size} bytes, got {len(frame)}")
    if not fds and not frame[3] & FLAG_FDS:
        sock.sendall(frame)  # the common case: one call, no view
        return
    if bool(frame[3] & FLAG_FDS) != bool(fds):
        raise ValueError("frame header's FLAG_FDS must be set exactly when fds are sent")
    if len(fds) > MAX_FDS_PER_FRAME:
        raise ValueError(f"{len(fds)} fds exceed MAX_FDS_PER_FRAME ({MAX_FDS_PER_FRAME})")
    view = memoryview(frame)
    if fds:
        rights = array.array("i", fds)
        # A stream sendmsg that returns n >= 1 has queued the fds with the first of its n bytes.
        sent = sock.sendmsg([view], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        view = view[sent:]
    if view:
        sock.sendall(view)


#: Buffers handed to one ``sendmsg`` by :func:`send_parts` (the kernel's IOV_MAX is 1024).
_GATHER_BUFFERS: Final = 512


def send_parts(sock: socket.socket, parts: Sequence[bytes]) -> None:
    """Send a frame given as pieces in order (``framing.encode_gathered``), with as few
    ``sendmsg`` calls as the socket allows and no copy of the pieces into one buffer; block
    until all is sent. Raises as :func:`send_frame` does (then close the connection)."""
    views = [memoryview(p) for p in parts if p]
    i = 0
    while i < len(views):
        batch = views[i : i + _GATHER_BUFFERS]
        n = sock.sendmsg(batch)
        for view in batch:
            if n < view.nbytes:
                views[i] = view[n:]
                break
            n -= view.nbytes
            i += 1


if TYPE_CHECKING:

    class Received(NamedTuple):
        """A frame and the fds that came with it.

        ``fds`` is empty unless ``frame.has_fds``; when not, it holds at least one fd. The
        caller owns every fd in it (opened close-on-exec) and must close each one, also when
        it rejects the request they came with.
        """

        frame: Frame
        fds: tuple[int, ...]

else:  # the same class, made without importing typing
    Received = namedtuple("Received", ("frame", "fds"))


# As ``framing._new_frame``: the tuple without the namedtuple's Python-level ``__new__``.
_new_received: Final[Callable[[type[Received], tuple[Frame, tuple[int, ...]]], Received]] = (
    tuple.__new__
)


def _close_all(fds: Sequence[int]) -> None:
    """Close each fd; one failing close (EBADF: closed elsewhere) must not leak the rest."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class FdInbox:
    """Sans-IO receiving side: bytes plus the fd group each ``recvmsg`` returned, in; frames
    with their fds, out. Wraps a :class:`FrameDecoder`.

    Owns every fd it was given until it hands it out in a :class:`Received` or closes it; call
    :meth:`close` when the connection ends so an unclaimed group is closed too. On
    :class:`ProtocolError` it closes every fd it holds, including those of frames decoded earlier
    in the failing call. Not thread-safe: one inbox per connection.
    """

    __slots__ = ("_decoder", "_held", "_held_at", "_received")

    def __init__(self, decoder: FrameDecoder | None = None) -> None:
        self._decoder = decoder = decoder if decoder is not None else FrameDecoder()
        self._received = decoder.offset + decoder.buffered  # stream offset past the last byte fed
        self._held: list[int] = []  # the unclaimed group riding with the incomplete frame's start
        self._held_at = -1  # stream offset of that frame's first byte

    @property
    def decoder(self) -> FrameDecoder:
        """The decoder in use (for ``buffered``/``offset``)."""
        return self._decoder

    @property
    def held_fds(self) -> int:
        """Fds received but not yet claimed by a complete frame (at most MAX_FDS_PER_FRAME)."""
        return len(self._held)

    def feed(self, data: bytes | bytearray | memoryview, fds: Sequence[int] = ()) -> list[Received]:
        """Consume the bytes and fds one ``recvmsg`` returned; return the frames completed.

        Takes ownership of ``fds`` (they are handed out or closed, even when this raises).
        Raises :class:`ProtocolError` for what :meth:`FrameDecoder.feed` refuses, for more than
        MAX_FDS_PER_FRAME fds, and for a FLAG_FDS frame whose first byte came without fds.
        """
        if not fds and not self._held and data.__class__ is bytes:
            try:
                one = self._decoder.feed_one(data)
            except ProtocolError:
                self.close()
                raise
            if one is not None:
                self._received += len(data)
                return [_new_received(Received, (one, ()))]
        start = self._received
        group = list(fds)
        if len(group) > MAX_FDS_PER_FRAME:
            _close_all(group)
            self.close()
            raise ProtocolError(f"{len(group)} fds in one message exceed {MAX_FDS_PER_FRAME}")
        try:
            frames = self._decoder.feed(data)
        except ProtocolError:
            _close_all(group)
            self.close()
            raise
        end = self._received = start + memoryview(data).nbytes
        out: list[Received] = []
        try:
            for frame in frames:
                if not frame.has_fds:
                    # Any group this frame's first byte carried is closed below: unasked.
                    out.append(Received(frame, ()))
                    continue
                at = frame.offset
                if self._held and at == self._held_at:
                    mine, self._held, self._held_at = self._held, [], -1
                elif group and start <= at < end:
                    mine, group = group, []
                else:
                    raise ProtocolError(f"frame at offset {at} claims fds but none came with it")
                out.append(Received(frame, tuple(mine)))
        except ProtocolError:
            _close_all(group)
            for item in out:
                _close_all(item.fds)
            self.close()
            raise
        # Keep only a group riding with the first byte of the incomplete frame; no other group
        # can ever be claimed (see the module docstring), so close it now.
        nxt = self._decoder.offset
        if self._held and self._held_at != nxt:
            _close_all(self._held)
            self._held, self._held_at = [], -1
        if group:
            if start <= nxt < end:
                self._held, self._held_at = group, nxt
            else:
                _close_all(group)
        return out

    def close(self) -> None:
        """Close the unclaimed fds held, if any. Idempotent."""
        held, self._held, self._held_at = self._held, [], -1
        _close_all(held)


# The socket module's flags are IntFlag members, whose ``&`` costs ~1 us in Python code; these
# plain ints keep the per-request path to integer arithmetic.
_CMSG_BUFSIZE: Final = socket.CMSG_SPACE(MAX_FDS_PER_FRAME * _INT_SIZE)
_MSG_CMSG_CLOEXEC: Final = int(socket.MSG_CMSG_CLOEXEC)
_MSG_CTRUNC: Final = int(socket.MSG_CTRUNC)
_SOL_SOCKET: Final = int(socket.SOL_SOCKET)
_SCM_RIGHTS: Final = int(socket.SCM_RIGHTS)


def recv_some(
    sock: socket.socket,
    inbox: FdInbox,
    *,
    bufsize: int = RECV_BYTES,
) -> tuple[list[Received], int]:
    """:func:`recv_frames`, also returning how many bytes the ``recvmsg`` read.

    A count below ``bufsize`` means the socket had no more queued, so a server need not try
    again (and pay for the ``BlockingIOError``) until the poller says it is readable.
    """
    data, ancdata, msg_flags, _addr = sock.recvmsg(bufsize, _CMSG_BUFSIZE, _MSG_CMSG_CLOEXEC)
    if not ancdata and not msg_flags and data:  # the common case: bytes only
        return inbox.feed(data), len(data)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % _INT_SIZE])
            fds.extend(got)
    if msg_flags & _MSG_CTRUNC:
        _close_all(fds)
        inbox.close()
        raise ProtocolError(f"peer sent more fds than the {MAX_FDS_PER_FRAME} a frame may carry")
    if not data:
        _close_all(fds)
        inbox.close()
        if inbox.decoder.buffered:
            # A peer killed while it wrote a frame: gone, like any other close (a client's
            # daemon killed mid-reply is unavailable, not speaking a wrong protocol).
            raise EOFError("peer closed the connection in the middle of a frame")
        raise EOFError("peer closed the connection")
    return inbox.feed(data, fds), len(data)


def recv_frames(
    sock: socket.socket,
    inbox: FdInbox,
    *,
    bufsize: int = RECV_BYTES,
) -> list[Received]:
    """One ``recvmsg`` on ``sock``: return the frames it completed, each with its fds.

    Blocks as ``sock`` does (a non-blocking socket raises ``BlockingIOError`` when there is
    nothing to read). Received fds are opened close-on-exec. Raises ``EOFError`` when the peer
    closed the connection between frames, :class:`ProtocolError` when it closed mid-frame, sent
    more than MAX_FDS_PER_FRAME fds (the kernel truncated them) or sent a bad frame, and
    ``OSError`` from the kernel. After any exception the connection must be closed (and
    ``inbox.close()`` called); no fd is leaked on any path.
    """
    return recv_some(sock, inbox, bufsize=bufsize)[0]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of an ``AF_UNIX`` socket.

    From ``SO_PEERCRED``: the kernel's record of the peer when it called ``connect`` (or created
    the socketpair), never the peer's own claim. Raises ``OSError`` (e.g. on a non-Unix socket).
    """
    pid, uid, gid = UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))
    return pid, uid, gid
