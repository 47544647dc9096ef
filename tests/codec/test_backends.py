"""Codec backends: one conformance suite that every registered backend must pass.

The suite runs over every codec in ``CODECS`` plus a deflate stand-in registered the way a
hardware backend would be, so the seam itself is exercised.
"""

from __future__ import annotations

import random
import threading
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmem.codec import (
    CODECS,
    HEADER,
    Codec,
    Dictionary,
    NullCodec,
    ZstdCodec,
    decode_frame,
    encode_frame,
    read_header,
    register_codec,
)
from agentmem.codec.dictionaries import Buffer
from agentmem.errors import CorruptFrame, InvalidArgument
from agentmem.states import SMUType

STANDIN_ID = 200


class DeflateStandIn:
    """A test backend over zlib, standing in for a hardware compressor (e.g. a deflate engine)."""

    codec_id = STANDIN_ID
    name = "deflate-standin"

    def compress(self, data: Buffer, level: int, dictionary: Dictionary | None) -> bytes:
        zlevel = min(max(level, 1), 9)
        if dictionary is None:
            return zlib.compress(data, zlevel)
        obj = zlib.compressobj(zlevel, zdict=dictionary.data)
        return obj.compress(data) + obj.flush()

    def decompress(self, payload: Buffer, raw_size: int, dictionary: Dictionary | None) -> bytes:
        obj = zlib.decompressobj(zdict=dictionary.data) if dictionary else zlib.decompressobj()
        try:
            out = obj.decompress(payload, raw_size + 1)
        except zlib.error as exc:
            raise CorruptFrame(f"deflate payload does not decode: {exc}") from exc
        if not obj.eof or obj.unused_data or obj.unconsumed_tail or len(out) != raw_size:
            raise CorruptFrame("deflate payload does not decode to raw_size")
        return out


def _words(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    vocab = ["agent", "tool", "call", "result", '{"role":', '"user"', "memory", "file", "\n"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(vocab).encode() + b" "
    return bytes(out[:size])


# A raw-content dictionary (no training needed): zstd and deflate both accept one.
DICTIONARY = Dictionary.from_data(_words(99, 4096), SMUType.CONVERSATION)
DICTIONARIES = {DICTIONARY.dict_id: DICTIONARY}


@pytest.fixture(scope="module", params=[*sorted(CODECS), STANDIN_ID])
def codec(request: pytest.FixtureRequest) -> Iterator[Codec]:
    """Each registered backend, and the stand-in registered for the duration."""
    codec_id: int = request.param
    if codec_id != STANDIN_ID:
        yield CODECS[codec_id]
        return
    standin = DeflateStandIn()
    register_codec(standin)
    try:
        yield standin
    finally:
        del CODECS[STANDIN_ID]


@pytest.fixture
def codecs_restored() -> Iterator[None]:
    """Restore the registry after a test that changes it."""
    saved = dict(CODECS)
    yield
    CODECS.clear()
    CODECS.update(saved)


# --- conformance: every backend ------------------------------------------------------------


@given(data=st.binary(max_size=4096), use_dict=st.booleans())
def test_frame_round_trip(codec: Codec, data: bytes, use_dict: bool) -> None:
    dictionary = DICTIONARY if use_dict else None
    frame = encode_frame(data, codec=codec, dictionary=dictionary, min_gain=0)
    header = read_header(frame)
    assert header.raw_size == len(data)
    assert header.codec == codec.codec_id
    assert header.dict_id == (DICTIONARY.dict_id if use_dict and codec.codec_id else 0)
    assert decode_frame(frame, DICTIONARIES) == data


@given(data=st.binary(max_size=2048), use_dict=st.booleans())
def test_codec_contract_round_trip(codec: Codec, data: bytes, use_dict: bool) -> None:
    dictionary = DICTIONARY if use_dict else None
    payload = codec.compress(data, 3, dictionary)
    assert isinstance(payload, bytes)
    assert codec.decompress(payload, len(data), dictionary) == data
    assert codec.decompress(memoryview(payload), len(data), dictionary) == data


def test_accepts_every_buffer_type(codec: Codec) -> None:
    data = _words(1, 3000)
    for buf in (data, bytearray(data), memoryview(data)):
        assert decode_frame(encode_frame(buf, codec=codec, min_gain=0)) == data


def test_wrong_raw_size_is_corrupt(codec: Codec) -> None:
    data = _words(2, 2000)
    payload = codec.compress(data, 3, None)
    for wrong in (len(data) - 1, len(data) + 1, 0):
        with pytest.raises(CorruptFrame):
            codec.decompress(payload, wrong, None)


def test_truncated_or_extended_payload_is_corrupt(codec: Codec) -> None:
    data = _words(3, 2000)
    frame = encode_frame(data, codec=codec, min_gain=0)
    for bad in (frame[:-1], frame[: HEADER.size + 1], frame[: HEADER.size], frame + b"\x00"):
        with pytest.raises(CorruptFrame):
            decode_frame(bad)


def test_flipped_payload_bytes_raise_only_corrupt_frame(codec: Codec) -> None:
    """A flip is caught (CorruptFrame) or decodes to raw_size bytes: never another error.

    Without a checksum a flipped literal can decode to other bytes of the right length; the
    store's BLAKE3 re-hash catches those, not the codec.
    """
    data = _words(4, 1500)
    frame = encode_frame(data, codec=codec, dictionary=DICTIONARY, min_gain=0)
    for i in range(HEADER.size, len(frame)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(frame)
            bad[i] ^= mask
            try:
                out = decode_frame(bad, DICTIONARIES)
            except CorruptFrame:
                continue
            assert len(out) == len(data)


def test_thread_safety(codec: Codec) -> None:
    """Threads encoding and decoding at once get exactly what one thread gets."""
    inputs = [_words(seed, 800 + seed * 37) for seed in range(40)]
    expected = [encode_frame(d, codec=codec, dictionary=DICTIONARY, min_gain=0) for d in inputs]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                for data, frame in zip(inputs, expected, strict=True):
                    assert encode_frame(data, codec=codec, dictionary=DICTIONARY, min_gain=0) == (
                        frame
                    )
                    assert decode_frame(frame, DICTIONARIES) == data
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- the registry ------------------------------------------------------------------------


class OtherStandIn(DeflateStandIn):
    """Registered and removed by the registry tests (the suite's stand-in may be registered)."""

    codec_id = 201
    name = "other-standin"


def test_builtin_registry() -> None:
    assert isinstance(CODECS[0], NullCodec)
    assert isinstance(CODECS[1], ZstdCodec)
    assert {c.name for c in CODECS.values()} >= {"raw", "zstd"}
    assert all(cid == c.codec_id for cid, c in CODECS.items())


@pytest.mark.usefixtures("codecs_restored")
def test_register_codec_rules() -> None:
    standin = OtherStandIn()
    register_codec(standin)
    assert CODECS[OtherStandIn.codec_id] is standin
    with pytest.raises(InvalidArgument):
        register_codec(OtherStandIn())
    replacement = OtherStandIn()
    register_codec(replacement, replace=True)
    assert CODECS[OtherStandIn.codec_id] is replacement

    raw_impostor = OtherStandIn()
    raw_impostor.codec_id = 0
    with pytest.raises(InvalidArgument):
        register_codec(raw_impostor, replace=True)
    too_big = OtherStandIn()
    too_big.codec_id = 256
    with pytest.raises(InvalidArgument):
        register_codec(too_big)


def test_unregistered_codec_refused_for_encoding() -> None:
    with pytest.raises(InvalidArgument):
        encode_frame(b"x" * 100, codec=OtherStandIn())
    with pytest.raises(InvalidArgument):
        encode_frame(b"x" * 100, codec=ZstdCodec())  # not the registered instance


@pytest.mark.usefixtures("codecs_restored")
def test_frames_of_a_removed_backend_are_corrupt() -> None:
    register_codec(OtherStandIn())
    frame = encode_frame(b"abc" * 100, codec=CODECS[OtherStandIn.codec_id])
    del CODECS[OtherStandIn.codec_id]
    with pytest.raises(CorruptFrame, match="unknown codec"):
        decode_frame(frame)


# --- zstd specifics ----------------------------------------------------------------------


def test_zstd_levels() -> None:
    zstd = CODECS[1]
    data = _words(5, 5000)
    for level in (-5, 0, 1, 3, 19, 22):
        assert zstd.decompress(zstd.compress(data, level, DICTIONARY), len(data), DICTIONARY) == (
            data
        )
    for level in (23, -(1 << 17) - 1):
        with pytest.raises(InvalidArgument):
            zstd.compress(data, level, None)


def test_zstd_payload_is_bare() -> None:
    """No content size, checksum or dict id in the zstd frame: our header carries them."""
    data = _words(6, 1000)
    payload = CODECS[1].compress(data, 3, DICTIONARY)
    descriptor = payload[4]  # RFC 8878 frame header descriptor, after the 4-byte magic
    assert descriptor >> 6 == 0  # Frame_Content_Size_flag: no content size
    assert descriptor & 0x04 == 0  # Content_Checksum_flag
    assert descriptor & 0x03 == 0  # Dictionary_ID_flag


def test_zstd_refuses_impossible_expansion_before_decoding() -> None:
    frame = bytearray(encode_frame(b"\x00" * 1000, min_gain=0))
    HEADER.pack_into(frame, 0, b"AM", 1, 1, 0, 0xFFFFFFFF)
    with pytest.raises(CorruptFrame, match="cannot decode"):
        decode_frame(frame)


def test_zstd_highest_real_expansion_still_decodes() -> None:
    data = b"\x00" * (8 << 20)  # ~31k:1, close to zstd's limit of 32k:1
    assert decode_frame(encode_frame(data)) == data


def test_zstd_context_cache_is_bounded() -> None:
    codec = ZstdCodec()
    dictionaries = [
        Dictionary.from_data(_words(1000 + i, 512), SMUType.TOOL_RESULT) for i in range(40)
    ]
    data = _words(7, 600)
    for d in dictionaries:
        assert codec.decompress(codec.compress(data, 3, d), len(data), d) == data
    contexts = codec._contexts  # white box: the bound is the point of this test
    assert 0 < len(contexts.compressors) <= 16
    assert 0 < len(contexts.decompressors) <= 16
