"""Wire frames: a fixed header, then one msgpack map. Sans-IO: bytes in, messages out.

Why it is built this way
------------------------
A frame is ``header || body``. The header is one fixed struct (:data:`HEADER`) so a receiver
learns the body length from 8 bytes and can refuse an oversize frame *before* buffering any of
its body: a peer can make a receiver hold at most ``HEADER.size + MAX_FRAME_BYTES`` bytes.

The body is msgpack, decoded with bounds because the peer is not trusted:

* every str/bin/array/map length is capped (no declared length can exceed the body, and no
  array or map can declare more than :data:`MAX_CONTAINER_ITEMS` entries);
* ext types (msgpack timestamps included) are refused: the schema has no use for them;
* the decoded value is walked once to refuse nesting deeper than :data:`MAX_DEPTH`, map keys
  that are not ``str`` and any type outside ``None/bool/int/float/str/bytes/list/dict``.

msgpack preallocates each array at its declared length and only rejects nesting at its own
1024-level stack, so the depth check runs after decoding, and a hostile body of nested arrays
that each declare the most entries allowed reserves memory on the way. Capping declared lengths
at ``min(MAX_CONTAINER_ITEMS, body length)`` bounds it; measured here, transient, freed before
the ProtocolError: a 1 KiB body ~1 MiB and <1 ms, a 5 KiB body ~33 MiB and ~32 ms, any body of
64 KiB or more at most ~67 MiB and ~60 ms. A pure-Python depth pre-scan would prevent it but
would double the cost of every frame; instead the daemon closes the connection after any
:class:`~agentmem.errors.ProtocolError`, so each attempt costs the attacker a new connection.

Cost: ``encode`` then ``FrameDecoder.feed`` of a request with a 1 KiB bin field (id, op,
handle, content: a 1068-byte frame) takes ~3.5 us together on this project's machines (2 cores,
Python 3.11, msgpack 1.2.4; best of 7 runs of 100,000): ``encode`` ~0.8 us, ``feed`` ~2.6 us.
msgpack's own pack + unpack are ~1.0 us of it; the rest is the header checks, the validating
walk and the Frame object. The daemon and the client take the cheaper forms of both: an
:class:`Encoder` (one reused packer, ~0.5 us) and :meth:`FrameDecoder.feed_one` for a
``recvmsg`` that returned exactly one frame (~1.4 us for that frame, the checks inline).
``perf`` over client and daemon code sharing one thread (a socketpair, 4 KiB inline reads):
~62 % of the CPU is the interpreter running the layers between socket and store, ~27 % the
kernel, ~3 % msgpack; each Python-level step costs tens of ns, and they add up.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Callable, Mapping

import msgpack

from agentmem.errors import ProtocolError, TooLarge

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Final, NamedTuple

__all__ = [
    "FLAG_FDS",
    "FRAME_VERSION",
    "HEADER",
    "MAGIC",
    "MAX_CONTAINER_ITEMS",
    "MAX_DEPTH",
    "MAX_FRAME_BYTES",
    "Encoder",
    "Frame",
    "FrameDecoder",
    "encode",
]

HEADER: Final = struct.Struct(
    "<"  # little-endian, no padding: 8 bytes
    "2s"  # magic: b"AP" (agentmem protocol); anything else is not our peer
    "B"  # version: FRAME_VERSION; a receiver refuses versions it does not speak
    "B"  # flags: bit 0 FLAG_FDS ("file descriptors ride in this frame's ancillary data");
    #      bits 1-7 reserved, must be 0 so they can gain a meaning without a version bump
    "I"  # body length in bytes (the msgpack map that follows), at most MAX_FRAME_BYTES
)
"""The frame header layout. A change to it, or to the body encoding, bumps FRAME_VERSION."""

MAGIC: Final = b"AP"
FRAME_VERSION: Final = 1
FLAG_FDS: Final = 0x01
_RESERVED_FLAGS: Final = 0xFF & ~FLAG_FDS
_HEADER_SIZE: Final = HEADER.size
_pack_header: Final = HEADER.pack
_unpackb: Final = msgpack.unpackb
_unpack_header: Final = HEADER.unpack_from

#: Largest body of one frame: 16 MiB. A receiver buffers a frame whole before decoding it, so
#: this is the most one connection can make the daemon hold mid-frame (100 connections: at most
#: 1.6 GiB, which the daemon can bound further). 16 MiB takes ~3.5 ms through a Unix socket
#: here. Content beyond it (an SMU may reach MAX_SMU_BYTES = 1 GiB) travels in a memfd passed
#: with SCM_RIGHTS (~33 us a round trip): written once, read in place, never buffered whole.
MAX_FRAME_BYTES: Final = 16 << 20

#: Deepest nesting accepted in a body, counting the body map as depth 1. Replies nest about four
#: levels (reply -> result -> list of entries -> per-tier map); 16 leaves room to grow and keeps
#: the validating walk's recursion short.
MAX_DEPTH: Final = 16

#: Most entries one array or map may declare. Longer listings are paged by the operation.
#: 65,536 entries caps what one declared-but-absent array reserves at 512 KiB of pointers.
MAX_CONTAINER_ITEMS: Final = 1 << 16

_SCALARS: Final = frozenset({str, int, bytes, float, bool, type(None)})

#: Frames up to this size are decoded from a copy of their body, larger ones from a view: a
#: slice of a few KiB costs less than making a memoryview (0.42 against 0.61 us for a 40-byte
#: body, 0.64 against 0.72 us for 4 KiB, msgpack's unpack included); 16 MiB is not copied.
_COPY_MAX: Final = 16 << 10

#: Largest packer buffer an :class:`Encoder` keeps between frames (it grows to the largest
#: body packed); beyond it the next frame pays for a fresh packer (~1 us) instead. 64 KiB: a
#: client process that once sent a 250 KiB body should not keep 250 KiB for it (an agent's
#: whole heap is a few MiB).
_KEEP_BUFFER: Final = 64 << 10

#: A packer's first buffer. msgpack's default is 256 KiB, allocated whole by every ``Packer``
#: (``packb`` included): where glibc serves it from pages an earlier large block left in the
#: heap, all of it is resident, ~0.26 MiB an agent process for a buffer its requests (< 2 KiB
#: but for content) never fill. The buffer grows as a body needs (same speed, measured).
_FIRST_BUFFER: Final = 4 << 10


def _packer() -> msgpack.Packer:
    return msgpack.Packer(buf_size=_FIRST_BUFFER)


if TYPE_CHECKING:

    class Frame(NamedTuple):
        """One decoded frame.

        ``body`` is a fresh dict owned by the caller (nothing else refers to it). ``has_fds``
        is the header's FLAG_FDS: the sender attached file descriptors to this frame's first
        byte. ``offset`` is the stream offset of the frame's first header byte (0 for the
        first frame a decoder sees); the fd-passing shell uses it to match ancillary data to
        frames.
        """

        body: dict[str, object]
        has_fds: bool
        offset: int

else:  # the same class, made without importing typing
    Frame = namedtuple("Frame", ("body", "has_fds", "offset"))


def encode(msg: Mapping[str, object], *, fds: bool = False) -> bytes:
    """One frame carrying ``msg``; ``fds`` sets FLAG_FDS (the caller then sends fds with it).

    Returns a new ``bytes``; ``msg`` is only read. Raises :class:`TooLarge` if the encoded body
    exceeds MAX_FRAME_BYTES, and ``TypeError``/``ValueError`` (``OverflowError`` included) if
    ``msg`` holds something msgpack cannot encode. ``encode`` does not run the receiver's checks:
    non-``str`` keys or nesting deeper than MAX_DEPTH make the peer drop the connection.
    Thread-safe (no shared state).
    """
    body: bytes = _packer().pack(msg)
    n = len(body)
    if n > MAX_FRAME_BYTES:
        raise TooLarge(
            f"frame body of {n} bytes exceeds {MAX_FRAME_BYTES}; send content in a memfd"
        )
    return HEADER.pack(MAGIC, FRAME_VERSION, FLAG_FDS if fds else 0, n) + body


# ``Frame(...)`` runs the namedtuple's Python-level ``__new__`` (~0.25 us); building the tuple
# directly gives the same object for a few tens of ns.
_new_frame: Final[Callable[[type[Frame], tuple[dict[str, object], bool, int]], Frame]] = (
    tuple.__new__
)


class Encoder:
    """:func:`encode` with one reusable msgpack ``Packer``: same bytes, ~0.2 us a frame less
    (``msgpack.packb`` builds and frees a packer, and its buffer, on every call).

    Not thread-safe: one encoder per sending thread (the daemon's loop has one for all its
    connections); :func:`encode` is the thread-safe form. A failed ``encode`` leaves the encoder
    usable (the packer resets). The packer keeps a buffer as large as the largest body it made,
    so after a body above ``_KEEP_BUFFER`` bytes it is replaced by a fresh one.
    """

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack: Callable[[object], bytes] = _packer().pack

    def encode(self, msg: Mapping[str, object], *, fds: bool = False) -> bytes:
        """One frame carrying ``msg``, exactly as :func:`encode` makes it (same errors)."""
        body = self._pack(msg)
        n = len(body)
        if n > _KEEP_BUFFER:
            self._pack = _packer().pack  # do not hold on to a buffer of up to 16 MiB
        if n > MAX_FRAME_BYTES:
            raise TooLarge(
                f"frame body of {n} bytes exceeds {MAX_FRAME_BYTES}; send content in a memfd"
            )
        return _pack_header(MAGIC, FRAME_VERSION, FLAG_FDS if fds else 0, n) + body


#: A list of byte strings totalling at least this many bytes is sent as gathered pieces
#: (:func:`encode_gathered`) rather than packed into one body.
GATHER_MIN_BYTES: Final = 32 << 10
_BIN_HEADER8, _BIN_HEADER16, _BIN_HEADER32 = (
    struct.Struct(">BB"),
    struct.Struct(">BH"),
    struct.Struct(">BI"),
)


def _raw_header(item: bytes) -> bytes:
    """The msgpack ``bin`` header of ``item`` (what ``packb`` writes before its bytes)."""
    n = len(item)
    if n < 1 << 8:
        return _BIN_HEADER8.pack(0xC4, n)
    if n < 1 << 16:
        return _BIN_HEADER16.pack(0xC5, n)
    return _BIN_HEADER32.pack(0xC6, n)


def encode_gathered(msg: Mapping[str, object], key: str) -> list[bytes] | None:
    """The frame :func:`encode` makes for ``msg`` as a list of pieces to send in order, the
    ``bytes`` items of the list ``msg[key]`` among them as they are, not copied into a body;
    None when ``msg[key]`` is not a list of ``bytes`` of at least ``GATHER_MIN_BYTES`` (send
    :func:`encode`'s frame then). For a client sending a batch of messages: a 120 KiB body
    packed per request is a heap block the process keeps (glibc's heap does not shrink past
    the blocks freed below its top), measured at 1.1 MiB kept after loading a 30 MB history
    64 messages a request and 3.4 MiB at 256; the pieces are the messages' own objects.
    Raises as :func:`encode` does.
    """
    items = msg.get(key)
    if not isinstance(items, list):
        return None
    total = 0
    for item in items:
        if item.__class__ is not bytes:
            return None
        total += len(item)
    if total < GATHER_MIN_BYTES:
        return None
    packer = _packer()
    parts: list[bytes] = [b"", packer.pack_map_header(len(msg))]
    for k, v in msg.items():
        parts.append(packer.pack(k))
        if k != key:
            parts.append(packer.pack(v))
            continue
        parts.append(packer.pack_array_header(len(items)))
        for item in items:
            parts.append(_raw_header(item))
            parts.append(item)
    n = sum(len(p) for p in parts)
    if n > MAX_FRAME_BYTES:
        raise TooLarge(
            f"frame body of {n} bytes exceeds {MAX_FRAME_BYTES}; send content in a memfd"
        )
    parts[0] = HEADER.pack(MAGIC, FRAME_VERSION, 0, n)
    return parts


def _version_error(version: int) -> ProtocolError:
    return ProtocolError(
        f"frame version {version} not supported (this side speaks {FRAME_VERSION})"
    )


def _parse_header(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, bool]:
    """(body length, has_fds) of the header at ``buf[pos:]``; ProtocolError if it is bad."""
    magic, version, flags, length = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != FRAME_VERSION:
        raise _version_error(version)
    if flags & _RESERVED_FLAGS:
        raise ProtocolError(f"reserved frame flags set: {flags:#04x}")
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame body of {length} bytes exceeds {MAX_FRAME_BYTES}")
    return length, bool(flags & FLAG_FDS)


def _check_value(value: object, depth: int) -> None:
    """Refuse types outside the schema, non-str map keys and nesting beyond MAX_DEPTH."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if depth > MAX_DEPTH:
        raise ProtocolError(f"frame body nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):  # exactly dict or list: msgpack builds no subclasses
        for key, item in value.items():
            if type(key) is not str:
                raise ProtocolError(f"map key of type {type(key).__name__}, expected str")
            if type(item) not in _SCALARS:
                _check_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if type(item) not in _SCALARS:
                _check_value(item, depth + 1)
    else:
        raise ProtocolError(f"value of type {kind.__name__} is not allowed in a frame body")


def _decode_body(view: bytes | memoryview) -> dict[str, object]:
    """The map in ``view`` (exactly one frame body); ProtocolError for anything else."""
    try:
        if len(view) <= MAX_CONTAINER_ITEMS:
            # msgpack 1.2 (pinned) defaults: raw=False (str is str), strict_map_key=True (keys
            # are str or bytes), use_list=True, and every max_*_len = len(view) (no declared
            # length beyond the body). Passing them again costs ~0.25 us a call.
            body = msgpack.unpackb(view, max_ext_len=0)
        else:
            body = msgpack.unpackb(
                view,
                max_array_len=MAX_CONTAINER_ITEMS,
                max_map_len=MAX_CONTAINER_ITEMS,
                max_ext_len=0,
            )
    except RecursionError:  # pragma: no cover - msgpack's own stack refuses first (StackError)
        raise ProtocolError("frame body nested too deeply") from None
    except (ValueError, TypeError, msgpack.StackError) as exc:
        # ValueError covers truncation, ExtraData, FormatError, UnicodeDecodeError and the
        # max_*_len and strict_map_key refusals.
        raise ProtocolError(f"undecodable frame body: {type(exc).__name__}: {exc}") from exc
    if body.__class__ is not dict:
        raise ProtocolError(f"frame body is a {type(body).__name__}, expected a map")
    _check_map(body)
    return body


def _check_map(body: dict[str, object]) -> None:
    """The checks of :func:`_check_value` for the body map (depth 1), its top level inline:
    most bodies are flat maps of scalars (~0.2 us for four keys)."""
    scalars = _SCALARS
    for key, item in body.items():
        if key.__class__ is not str:
            raise ProtocolError(f"map key of type {type(key).__name__}, expected str")
        if item.__class__ not in scalars:
            _check_value(item, 2)


class FrameDecoder:
    """Turns a byte stream into frames, whatever the boundaries the bytes arrive with.

    Buffer ownership: ``feed`` only reads ``data`` and keeps no reference to it once it returns;
    bytes of an incomplete frame are copied into the decoder's own buffer. The decoder never
    holds more than ``HEADER.size + MAX_FRAME_BYTES`` bytes, whatever ``feed`` is given.

    After a :class:`ProtocolError` the stream cannot be resynchronised: frames decoded earlier in
    the failing call are discarded and every later ``feed`` raises again; close the connection.
    Not thread-safe: one decoder per connection, fed by one reader.
    """

    __slots__ = ("_buf", "_error", "_offset")

    def __init__(self) -> None:
        self._buf = bytearray()  # bytes of the one incomplete frame, header first
        self._offset = 0  # stream offset of the first byte of _buf (start of next frame)
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for the incomplete frame (0 between frames)."""
        return len(self._buf)

    @property
    def offset(self) -> int:
        """Stream offset where the next, not yet complete, frame starts."""
        return self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``data``; return the frames it completes, in stream order (maybe none).

        Raises :class:`ProtocolError` on a bad magic, version or reserved flag, a length above
        MAX_FRAME_BYTES (checked from the header, before any body byte is buffered), an
        undecodable body, or a body that is not a map of ``str`` keys within the bounds.
        """
        if self._error is not None:
            raise ProtocolError(f"stream already failed: {self._error}")
        try:
            return self._feed(data)
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            raise

    def feed_one(self, data: bytes) -> Frame | None:
        """The common case, fast: ``data`` is exactly one whole frame without fds and nothing
        is buffered. Returns it (as :meth:`feed` would), or None without consuming anything, in
        which case the caller uses :meth:`feed`. Saves ~2 us a request over the general path.
        """
        n = len(data)
        if self._buf or self._error is not None or n < _HEADER_SIZE:
            return None
        magic, version, flags, length = _unpack_header(data, 0)
        if (
            flags
            or n != _HEADER_SIZE + length
            or magic != MAGIC
            or version != FRAME_VERSION
            or length > MAX_FRAME_BYTES
        ):
            return None
        # _decode_body inlined for a body of up to _COPY_MAX bytes, the usual request or reply
        # (~0.5 us less): on anything unusual it runs again and raises the precise error.
        try:
            body = _unpackb(
                data[_HEADER_SIZE:] if n <= _COPY_MAX else memoryview(data)[_HEADER_SIZE:],
                max_ext_len=0,
            )
        except Exception:
            body = None
        try:
            if n > _COPY_MAX or body.__class__ is not dict:
                body = _decode_body(memoryview(data)[_HEADER_SIZE:])
            else:
                scalars = _SCALARS
                for key, item in body.items():
                    if key.__class__ is not str or item.__class__ not in scalars:
                        _check_map(body)  # nested values, or a bad key: the full walk
                        break
        except ProtocolError as exc:
            self._error = exc
            raise
        offset = self._offset
        self._offset = offset + n
        return _new_frame(Frame, (body, False, offset))

    def _feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        frames: list[Frame] = []
        with memoryview(data) as raw:
            view = raw if raw.format == "B" and raw.ndim == 1 else raw.cast("B")
            n = len(view)
            pos = 0
            buf = self._buf
            if buf:
                # Finish the frame begun in an earlier call, taking from ``data`` only the bytes
                # it still needs, so the buffer never grows beyond one frame.
                have = len(buf)
                if have < HEADER.size:
                    pos = min(HEADER.size - have, n)
                    buf += view[:pos]
                    if len(buf) < HEADER.size:
                        self._check_partial_header()
                        return frames
                length, has_fds = _parse_header(buf, 0)
                end = HEADER.size + length
                take = min(end - len(buf), n - pos)
                buf += view[pos : pos + take]
                pos += take
                if len(buf) < end:
                    return frames
                with memoryview(buf) as whole:
                    body = _decode_body(whole[HEADER.size :])
                frames.append(Frame(body, has_fds, self._offset))
                self._offset += end
                buf.clear()
            # Whole frames straight from ``data``: no copy into the buffer.
            unpack_from = HEADER.unpack_from
            while n - pos >= _HEADER_SIZE:
                magic, version, flags, length = unpack_from(view, pos)
                if (
                    magic != MAGIC
                    or version != FRAME_VERSION
                    or flags & _RESERVED_FLAGS
                    or length > MAX_FRAME_BYTES
                ):
                    _parse_header(view, pos)  # raises the precise ProtocolError
                end = pos + _HEADER_SIZE + length
                if end > n:
                    break
                body = _decode_body(view[pos + _HEADER_SIZE : end])
                frames.append(Frame(body, bool(flags), self._offset))
                self._offset += end - pos
                pos = end
            if pos < n:
                buf += view[pos:]  # at most one frame: its header was checked above
                if len(buf) < HEADER.size:
                    self._check_partial_header()
        return frames

    def _check_partial_header(self) -> None:
        """Refuse a wrong magic or version as soon as its bytes arrive."""
        buf = self._buf
        if buf[:2] != MAGIC[: len(buf)]:
            raise ProtocolError(f"bad frame magic {bytes(buf[:2])!r}, expected {MAGIC!r}")
        if len(buf) > 2 and buf[2] != FRAME_VERSION:
            raise _version_error(buf[2])
