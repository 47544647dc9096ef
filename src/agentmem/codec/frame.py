"""Frames: a stored, possibly compressed, chunk. Pure functions over bytes; no I/O.

A frame is a fixed 12-byte header followed by the payload::

    offset size field     meaning
    0      2    magic     b"AM"
    2      1    version   FRAME_VERSION (1)
    3      1    codec     id of the codec that produced the payload (0 raw, 1 zstd, ...)
    4      4    dict_id   dictionary the payload needs (0: none), little-endian
    8      4    raw_size  length of the plain bytes, little-endian
    12     ...  payload

The header carries everything needed to decode the payload, so compression defaults (codec,
level, dictionary) can change without migrating stored frames. The chunk's id is the BLAKE3 of
the plain bytes and is *not* in the frame: the store keys frames by it and re-hashes what
``decode_frame`` returns, which is how corruption the codec cannot see is caught.

A change to this layout or to what a payload means for an existing codec id is a format change:
bump ``FRAME_VERSION`` and the golden test (``tests/golden/test_frame_golden.py``). See
``docs/formats.md``.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping

from agentmem import constants
from agentmem.codec.backends import CODECS, RAW_CODEC_ID, ZSTD_CODEC_ID, Codec
from agentmem.codec.dictionaries import NO_DICTIONARY, Buffer, Dictionary
from agentmem.errors import CorruptFrame, InvalidArgument, TooLarge, UnknownDictionary

FRAME_MAGIC = b"AM"
FRAME_VERSION = 1

HEADER = struct.Struct(
    "<"  # little-endian, no padding: 12 bytes
    "2s"  # magic: FRAME_MAGIC
    "B"  # version: FRAME_VERSION
    "B"  # codec: codec id (backends.CODECS key)
    "I"  # dict_id: dictionary id, 0 = no dictionary
    "I"  # raw_size: length of the plain (decoded) bytes
)
"""The frame header; every field is described in the module docstring."""

#: raw_size is a u32: a frame holds at most 4 GiB - 1 of plain bytes, far above what the store
#: frames (chunks of at most CDC_MAX_SIZE, warm groups of WARM_GROUP_BYTES).
MAX_RAW_SIZE = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True, slots=True)
class FrameHeader:
    """A parsed, validated frame header."""

    #: Id of the codec that produced the payload; registered in ``CODECS``.
    codec: int
    #: Dictionary the payload needs, or 0 for none (always 0 for raw frames).
    dict_id: int
    #: Length of the plain bytes the payload decodes to.
    raw_size: int


def _byte_view(buf: Buffer) -> memoryview:
    """``buf`` as a flat view of bytes, so lengths count bytes (not items of a typed view)."""
    view = memoryview(buf)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def read_header(frame: Buffer) -> FrameHeader:
    """Parse and validate the header at the start of ``frame`` (the payload is not looked at).

    Raises ``CorruptFrame`` if ``frame`` is shorter than the header, the magic or version is
    wrong, the codec id is not registered, or a raw frame names a dictionary.
    """
    view = _byte_view(frame)
    if len(view) < HEADER.size:
        raise CorruptFrame(
            f"frame of {len(view)} bytes is shorter than its {HEADER.size}-byte header"
        )
    magic, version, codec, dict_id, raw_size = HEADER.unpack_from(view)
    if magic != FRAME_MAGIC:
        raise CorruptFrame(f"bad frame magic {magic!r}")
    if version != FRAME_VERSION:
        raise CorruptFrame(
            f"unsupported frame version {version} (this build reads {FRAME_VERSION})"
        )
    if codec not in CODECS:
        raise CorruptFrame(f"frame uses unknown codec id {codec}")
    if codec == RAW_CODEC_ID and dict_id != NO_DICTIONARY:
        raise CorruptFrame("raw frame names a dictionary")
    return FrameHeader(codec=codec, dict_id=dict_id, raw_size=raw_size)


def encode_frame(
    data: Buffer,
    *,
    codec: Codec | None = None,
    dictionary: Dictionary | None = None,
    level: int = 3,
    min_gain: float = constants.MIN_COMPRESSION_GAIN,
) -> bytes:
    """``data`` as a frame, compressed with ``codec`` (default zstd) unless that does not pay.

    Adaptive skip: if ``len(payload) * min_gain > len(data)`` the data is stored raw (codec 0,
    no dictionary), so incompressible content (random bytes, already-compressed images) costs
    only the 12-byte header and no decompression on read. ``min_gain=0`` always keeps the
    codec's payload. ``dictionary`` is recorded in the header (and needed to decode) only when
    the codec's payload is kept.

    ``data`` is only read. Raises ``TooLarge`` for more than 4 GiB - 1 bytes, and
    ``InvalidArgument`` for a codec not registered in ``CODECS`` (nothing could decode its
    frames), a negative ``min_gain`` or a level the codec refuses. Thread-safe.
    """
    view = _byte_view(data)
    raw_size = len(view)
    if raw_size > MAX_RAW_SIZE:
        raise TooLarge(f"{raw_size} bytes exceed a frame's {MAX_RAW_SIZE}")
    if min_gain < 0:
        raise InvalidArgument(f"min_gain must be >= 0, got {min_gain}")
    if codec is None:
        codec = CODECS[ZSTD_CODEC_ID]
    elif CODECS.get(codec.codec_id) is not codec:
        raise InvalidArgument(f"codec {codec.name!r} (id {codec.codec_id}) is not registered")
    if codec.codec_id != RAW_CODEC_ID:
        payload = codec.compress(view, level, dictionary)
        if len(payload) * min_gain <= raw_size:
            dict_id = dictionary.dict_id if dictionary is not None else NO_DICTIONARY
            return (
                HEADER.pack(FRAME_MAGIC, FRAME_VERSION, codec.codec_id, dict_id, raw_size) + payload
            )
    header = HEADER.pack(FRAME_MAGIC, FRAME_VERSION, RAW_CODEC_ID, NO_DICTIONARY, raw_size)
    return b"".join((header, view))


def decode_frame(frame: Buffer, dictionaries: Mapping[int, Dictionary] | None = None) -> bytes:
    """The plain bytes of ``frame``: exactly ``raw_size`` bytes, in a new ``bytes`` object.

    ``dictionaries`` maps ids to dictionaries (a ``DictionarySet`` or any mapping) and is
    consulted only if the header names one. Raises ``UnknownDictionary`` if it is not there,
    and ``CorruptFrame`` for anything else wrong: bad header, a payload the codec cannot
    decode, a decoded length other than ``raw_size``, trailing bytes. Decoding with the right
    dictionary id but wrong plain bytes is not detected here: the caller re-hashes.
    ``frame`` is only read. Thread-safe.
    """
    header = read_header(frame)
    dictionary = None
    if header.dict_id != NO_DICTIONARY:
        if dictionaries is None or header.dict_id not in dictionaries:
            raise UnknownDictionary(f"frame needs dictionary {header.dict_id:#010x}")
        dictionary = dictionaries[header.dict_id]
    payload = _byte_view(frame)[HEADER.size :]
    plain = CODECS[header.codec].decompress(payload, header.raw_size, dictionary)
    if len(plain) != header.raw_size:
        raise CorruptFrame(f"payload decodes to {len(plain)} bytes, header says {header.raw_size}")
    return plain
