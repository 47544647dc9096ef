"""Codec backends: the ``Codec`` protocol, the raw and zstd codecs, and the ``CODECS`` registry.

The registry is the seam for hardware compressors: a backend (an accelerator's zstd, say)
implements :class:`Codec` and calls :func:`register_codec`; frames name their codec by the
``codec_id`` byte, so a frame written by one backend is read by whichever backend holds that id.
Every registered backend must pass the same conformance tests (``tests/codec``).

Why ``ZstdCodec`` caches contexts (measured here, zstd level 3, 112 KiB trained dictionary,
one ~1 KiB message):

    build a compressor on the dictionary, then compress     ~210 us
    the same with the dictionary digested once (~360 us)      ~9 us
    compress with a cached compressor                        ~1.2 us  (no dictionary: ~4.9 us)
    build a decompressor on the dictionary, then decode      ~21 us
    decode with a cached decompressor                        ~0.6 us

So building per call would make each dictionary frame ~170x slower to write than with a cache.
Through ``encode_frame``/``decode_frame`` a cached round trip is ~2 us + ~3 us.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

import zstandard

from agentmem.codec.dictionaries import NO_DICTIONARY, Buffer, Dictionary
from agentmem.errors import CorruptFrame, InvalidArgument

#: Codec id of stored-as-is payloads; part of the frame format, never re-registered.
RAW_CODEC_ID = 0
#: Codec id of zstd frames (RFC 8878, without content size, checksum or dictionary id).
ZSTD_CODEC_ID = 1
#: Codec ids are one byte in the frame header.
MAX_CODEC_ID = 0xFF

#: Compression levels zstd accepts: ``ZSTD_minCLevel()`` (-131072, "fast" levels) to 22.
ZSTD_MIN_LEVEL = -(1 << 17)
ZSTD_MAX_LEVEL = 22
#: zstd reads level 0 as "default", which is 3; normalised so caches see one key.
ZSTD_DEFAULT_LEVEL = 3
#: A zstd block regenerates at most 128 KiB and takes at least 4 bytes (3-byte header + 1 RLE
#: byte), so a payload of n bytes decodes to at most n // 4 * 128 KiB (10 MiB of zeros compress
#: to 335 bytes, 31k:1, measured). A header claiming more is corrupt; rejecting it first keeps a
#: forged raw_size from sizing a 4 GiB output buffer.
_ZSTD_MAX_BLOCK_BYTES = 128 << 10
_ZSTD_MIN_BLOCK_BYTES = 4
#: Cached contexts per thread and kind. A compressor on a digested dictionary holds ~28 KiB, a
#: decompressor ~96 KiB; 16 of each is ~2 MiB per thread and covers 4 trainable SMU types with
#: a few dictionary generations and levels each.
_CONTEXTS_PER_THREAD = 16


class Codec(Protocol):
    """A compressor of frame payloads, named in frame headers by ``codec_id`` (0..255).

    ``compress`` returns a payload for ``data`` (read only, not kept); it may ignore ``level``
    and ``dictionary``, and raises ``InvalidArgument`` for a level it does not support.
    ``decompress`` returns exactly ``raw_size`` bytes, or raises ``CorruptFrame`` for a payload
    it cannot decode to that size: never a library-specific error. ``dictionary`` is the one
    named by the frame header, or None. Implementations must be thread-safe.
    """

    @property
    def codec_id(self) -> int: ...

    @property
    def name(self) -> str: ...

    def compress(self, data: Buffer, level: int, dictionary: Dictionary | None) -> bytes: ...

    def decompress(
        self, payload: Buffer, raw_size: int, dictionary: Dictionary | None
    ) -> bytes: ...


class NullCodec:
    """Payload is the data as is: the fallback for content that does not compress.

    Thread-safe and stateless; ``level`` and ``dictionary`` are ignored.
    """

    codec_id = RAW_CODEC_ID
    name = "raw"

    def compress(self, data: Buffer, level: int, dictionary: Dictionary | None) -> bytes:
        """A copy of ``data``."""
        return bytes(data)

    def decompress(self, payload: Buffer, raw_size: int, dictionary: Dictionary | None) -> bytes:
        """A copy of ``payload``; ``CorruptFrame`` unless it is ``raw_size`` bytes long."""
        size = memoryview(payload).nbytes
        if size != raw_size:
            raise CorruptFrame(f"raw payload is {size} bytes, header says {raw_size}")
        return bytes(payload)


class _Contexts(threading.local):
    """One thread's zstd contexts: zstandard's contexts are not thread-safe, so none is shared.

    Keys: (dict id, level) for compressors, dict id for decompressors; dict id 0 is "none".
    Least recently used first.
    """

    def __init__(self) -> None:
        self.compressors: OrderedDict[tuple[int, int], zstandard.ZstdCompressor] = OrderedDict()
        self.decompressors: OrderedDict[int, zstandard.ZstdDecompressor] = OrderedDict()


class ZstdCodec:
    """zstd through python-zstandard, with optional dictionaries.

    Payloads are plain zstd frames without content size, checksum or dictionary id: the frame
    header already carries raw size and dict id, and integrity is the store's BLAKE3 re-hash of
    the plain bytes. Against zstandard's defaults (content size and dict id written) that saves
    5 bytes on a 565-byte message compressed with a dictionary to 27 bytes (measured).

    Thread-safe: each thread keeps its own LRU of compressors and decompressors (see
    :data:`_CONTEXTS_PER_THREAD`). Contexts are keyed by dictionary id, which is content-
    addressed, so two dictionaries with equal ids are the same dictionary.
    """

    codec_id = ZSTD_CODEC_ID
    name = "zstd"

    def __init__(self) -> None:
        self._contexts = _Contexts()
        #: Frames compressed or decoded so far, by any thread (a caller compares two readings
        #: to see whether the codec was used in between).
        self.uses = 0

    def compress(self, data: Buffer, level: int, dictionary: Dictionary | None) -> bytes:
        """``data`` as one zstd frame at ``level`` (-131072..22; 0 means 3)."""
        self.uses += 1
        return self._compressor(level, dictionary).compress(data)

    def release_contexts(self) -> None:
        """Free the calling thread's cached contexts.

        A level-6 compressor that compressed 1 MiB groups holds ~4.3 MiB and a decompressor
        with a digested dictionary ~2.5 MiB (zstd's ``memory_size``), for as long as it is
        cached: a daemon whose content sits idle frees them and builds them again (~0.6 ms
        each) on the next use.
        """
        self._contexts.compressors.clear()
        self._contexts.decompressors.clear()

    def decompress(self, payload: Buffer, raw_size: int, dictionary: Dictionary | None) -> bytes:
        """Decode one zstd frame to exactly ``raw_size`` bytes, else ``CorruptFrame``.

        Trailing bytes after the zstd frame are corruption too. Output is never allocated
        larger than ``raw_size`` (at least 1 byte, which zstd needs for an empty frame). A zstd
        frame may declare its content size (other encoders write it); it must equal
        ``raw_size``.
        """
        self.uses += 1
        size = memoryview(payload).nbytes
        if raw_size > size // _ZSTD_MIN_BLOCK_BYTES * _ZSTD_MAX_BLOCK_BYTES:
            raise CorruptFrame(f"zstd payload of {size} bytes cannot decode to {raw_size}")
        try:
            declared = zstandard.get_frame_parameters(payload).content_size
        except zstandard.ZstdError as exc:
            raise CorruptFrame(f"zstd frame header does not parse: {exc}") from exc
        # We write no content size, but another backend for id 1 may. zstandard sizes its output
        # by a declared content size and ignores max_output_size, so a flipped bit there would
        # ask for up to 2**64 bytes (a MemoryError, found by the fuzz test): check it first.
        if declared not in (zstandard.CONTENTSIZE_UNKNOWN, raw_size):
            raise CorruptFrame(f"zstd frame declares {declared} bytes, header says {raw_size}")
        dctx = self._decompressor(dictionary)
        try:
            plain = dctx.decompress(
                payload, max_output_size=max(raw_size, 1), allow_extra_data=False
            )
        except zstandard.ZstdError as exc:
            raise CorruptFrame(f"zstd payload does not decode: {exc}") from exc
        if len(plain) != raw_size:
            raise CorruptFrame(
                f"zstd payload decodes to {len(plain)} bytes, header says {raw_size}"
            )
        return plain

    def _compressor(self, level: int, dictionary: Dictionary | None) -> zstandard.ZstdCompressor:
        if not ZSTD_MIN_LEVEL <= level <= ZSTD_MAX_LEVEL:
            raise InvalidArgument(f"zstd level must be {ZSTD_MIN_LEVEL}..{ZSTD_MAX_LEVEL}")
        level = level or ZSTD_DEFAULT_LEVEL
        key = (dictionary.dict_id if dictionary else NO_DICTIONARY, level)
        cache = self._contexts.compressors
        cctx = cache.get(key)
        if cctx is not None:
            cache.move_to_end(key)
            return cctx
        cctx = zstandard.ZstdCompressor(
            level=level,
            dict_data=dictionary.zstd_for_level(level) if dictionary else None,
            write_content_size=False,
            write_checksum=False,
            write_dict_id=False,
        )
        cache[key] = cctx
        if len(cache) > _CONTEXTS_PER_THREAD:
            cache.popitem(last=False)
        return cctx

    def _decompressor(self, dictionary: Dictionary | None) -> zstandard.ZstdDecompressor:
        key = dictionary.dict_id if dictionary else NO_DICTIONARY
        cache = self._contexts.decompressors
        dctx = cache.get(key)
        if dctx is not None:
            cache.move_to_end(key)
            return dctx
        dctx = zstandard.ZstdDecompressor(dict_data=dictionary.zstd if dictionary else None)
        cache[key] = dctx
        if len(cache) > _CONTEXTS_PER_THREAD:
            cache.popitem(last=False)
        return dctx


CODECS: dict[int, Codec] = {RAW_CODEC_ID: NullCodec(), ZSTD_CODEC_ID: ZstdCodec()}
"""Codec id -> backend. Read by ``encode_frame``/``decode_frame``; extend via ``register_codec``."""


def register_codec(codec: Codec, *, replace: bool = False) -> None:
    """Make ``codec`` the backend for frames with its ``codec_id``.

    An id already registered raises ``InvalidArgument`` unless ``replace`` (e.g. an
    accelerator's zstd taking over id 1: its frames must decode with the software codec and
    back). Id 0 (raw) is the format's fallback and cannot be replaced. Not thread-safe:
    register at start-up, before frames are encoded or decoded.
    """
    codec_id = codec.codec_id
    if not 0 <= codec_id <= MAX_CODEC_ID:
        raise InvalidArgument(f"codec id must be 0..{MAX_CODEC_ID}, got {codec_id}")
    if codec_id == RAW_CODEC_ID:
        raise InvalidArgument("codec id 0 (raw) is fixed by the frame format")
    if codec_id in CODECS and not replace:
        raise InvalidArgument(f"codec id {codec_id} is already {CODECS[codec_id].name!r}")
    CODECS[codec_id] = codec


# Counting and caching are not part of the ``Codec`` protocol: a backend registered for an
# accelerator may keep no contexts (it has nothing to free and nothing to count), so these ask
# each codec for what it has rather than requiring every backend to carry both.


def codec_uses() -> int:
    """Frames compressed or decoded so far by the registered codecs that count them."""
    return sum(getattr(codec, "uses", 0) for codec in CODECS.values())


def release_contexts() -> None:
    """Free the calling thread's cached contexts of every registered codec that caches them."""
    for codec in CODECS.values():
        release = getattr(codec, "release_contexts", None)
        if release is not None:
            release()
