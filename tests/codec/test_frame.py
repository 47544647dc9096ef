"""Frames: header layout, adaptive skip, and every corrupt-input path."""

from __future__ import annotations

import array
import json
import random

import pytest
import zstandard
from hypothesis import example, given
from hypothesis import strategies as st

from agentmem import constants
from agentmem.codec import (
    CODECS,
    FRAME_MAGIC,
    FRAME_VERSION,
    HEADER,
    Dictionary,
    FrameHeader,
    decode_frame,
    encode_frame,
    read_header,
)
from agentmem.codec import frame as frame_module
from agentmem.errors import CorruptFrame, InvalidArgument, TooLarge, UnknownDictionary
from agentmem.states import SMUType


def _text(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = ["the", "agent", "reads", "a", "file", "and", "calls", "tool", "with", "result"]
    out = bytearray()
    while len(out) < size:
        out += (rng.choice(words) + rng.choice([" ", " ", ", ", ".\n"])).encode()
    return bytes(out[:size])


DICTIONARY = Dictionary.from_data(_text(42, 2048), SMUType.TOOL_RESULT)


def _frame(codec: int, dict_id: int, raw_size: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(FRAME_MAGIC, FRAME_VERSION, codec, dict_id, raw_size) + payload


# --- layout --------------------------------------------------------------------------------


def test_header_layout() -> None:
    assert HEADER.size == 12
    assert FRAME_MAGIC == b"AM"
    assert FRAME_VERSION == 1
    raw = encode_frame(b"\x01\x02\x03", min_gain=1.0)
    assert raw == b"AM\x01\x00\x00\x00\x00\x00\x03\x00\x00\x00\x01\x02\x03"
    assert read_header(raw) == FrameHeader(codec=0, dict_id=0, raw_size=3)


def test_header_names_codec_and_dictionary() -> None:
    data = _text(1, 4000)
    f = encode_frame(data, dictionary=DICTIONARY)
    assert read_header(f) == FrameHeader(codec=1, dict_id=DICTIONARY.dict_id, raw_size=4000)
    assert decode_frame(f, {DICTIONARY.dict_id: DICTIONARY}) == data


def test_empty_data() -> None:
    f = encode_frame(b"")
    assert read_header(f) == FrameHeader(codec=0, dict_id=0, raw_size=0)
    assert decode_frame(f) == b""
    forced = encode_frame(b"", min_gain=0)  # a zstd frame of nothing still decodes
    assert read_header(forced).codec == 1
    assert decode_frame(forced) == b""


def test_typed_memoryview_is_framed_as_bytes() -> None:
    values = array.array("I", range(1000))
    f = encode_frame(memoryview(values))
    assert read_header(f).raw_size == 4000
    assert decode_frame(f) == values.tobytes()


# --- adaptive skip -------------------------------------------------------------------------


def test_incompressible_data_is_stored_raw() -> None:
    data = random.Random(7).randbytes(10_000)
    f = encode_frame(data, dictionary=DICTIONARY)
    assert read_header(f) == FrameHeader(codec=0, dict_id=0, raw_size=len(data))
    assert len(f) == HEADER.size + len(data)
    assert decode_frame(f) == data  # no dictionary needed for a raw frame


def test_text_compresses() -> None:
    data = _text(2, 20_000)
    f = encode_frame(data)
    assert read_header(f).codec == 1
    assert len(f) * 2 < len(data)


def test_json_messages_compress() -> None:
    message = json.dumps(
        {"role": "assistant", "content": _text(3, 800).decode(), "tool_calls": []}
    ).encode()
    assert read_header(encode_frame(message)).codec == 1


def test_min_gain_threshold() -> None:
    data = _text(4, 3000)
    payload_len = len(encode_frame(data, min_gain=0)) - HEADER.size
    exact = len(data) / payload_len
    assert read_header(encode_frame(data, min_gain=exact)).codec == 1  # gain == min_gain: kept
    assert read_header(encode_frame(data, min_gain=exact * 1.001)).codec == 0
    assert constants.MIN_COMPRESSION_GAIN > 1.0
    with pytest.raises(InvalidArgument):
        encode_frame(data, min_gain=-1.0)


def test_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real 4 GiB buffer is not needed to test the bound: lower it.
    monkeypatch.setattr(frame_module, "MAX_RAW_SIZE", 100)
    encode_frame(b"x" * 100)
    with pytest.raises(TooLarge):
        encode_frame(b"x" * 101)


# --- corrupt input -------------------------------------------------------------------------


@pytest.mark.parametrize("length", range(HEADER.size))
def test_truncated_header(length: int) -> None:
    f = encode_frame(_text(5, 500))
    with pytest.raises(CorruptFrame, match="shorter"):
        read_header(f[:length])
    with pytest.raises(CorruptFrame, match="shorter"):
        decode_frame(f[:length])


def test_wrong_magic() -> None:
    f = bytearray(encode_frame(_text(6, 500)))
    f[0:2] = b"ZZ"
    with pytest.raises(CorruptFrame, match="magic"):
        decode_frame(f)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version(version: int) -> None:
    f = bytearray(encode_frame(_text(7, 500)))
    f[2] = version
    with pytest.raises(CorruptFrame, match="version"):
        decode_frame(f)


@pytest.mark.parametrize("codec_id", [2, 77, 255])
def test_unknown_codec(codec_id: int) -> None:
    assert codec_id not in CODECS
    with pytest.raises(CorruptFrame, match="unknown codec"):
        decode_frame(_frame(codec_id, 0, 3, b"abc"))


def test_raw_frame_naming_a_dictionary() -> None:
    with pytest.raises(CorruptFrame, match="dictionary"):
        decode_frame(_frame(0, DICTIONARY.dict_id, 3, b"abc"), {DICTIONARY.dict_id: DICTIONARY})


def test_unknown_dictionary() -> None:
    f = encode_frame(_text(8, 3000), dictionary=DICTIONARY)
    other = Dictionary.from_data(_text(43, 2048), SMUType.TOOL_RESULT)
    for dictionaries in (None, {}, {other.dict_id: other}):
        with pytest.raises(UnknownDictionary):
            decode_frame(f, dictionaries)
    assert issubclass(UnknownDictionary, CorruptFrame)


@pytest.mark.parametrize("codec_id", [0, 1])
@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_raw_size_mismatch(codec_id: int, delta: int) -> None:
    data = _text(9, 3000)
    f = bytearray(encode_frame(data, codec=CODECS[codec_id], min_gain=0))
    HEADER.pack_into(f, 0, FRAME_MAGIC, FRAME_VERSION, codec_id, 0, len(data) + delta)
    with pytest.raises(CorruptFrame):
        decode_frame(f)


def test_truncated_zstd_payload() -> None:
    f = encode_frame(_text(10, 5000), dictionary=DICTIONARY)
    assert read_header(f).codec == 1
    dictionaries = {DICTIONARY.dict_id: DICTIONARY}
    for cut in range(HEADER.size, len(f)):
        with pytest.raises(CorruptFrame):
            decode_frame(f[:cut], dictionaries)


def test_zstd_payload_with_trailing_bytes() -> None:
    f = encode_frame(_text(11, 5000))
    with pytest.raises(CorruptFrame):
        decode_frame(f + f[HEADER.size :])  # a second zstd frame glued on
    with pytest.raises(CorruptFrame):
        decode_frame(f + b"\x00")


def test_zstd_declared_content_size() -> None:
    """Frames of another zstd encoder may declare a content size: it must match raw_size."""
    data = _text(13, 4000)
    payload = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    assert decode_frame(_frame(1, 0, len(data), payload)) == data
    for wrong in (len(data) - 1, len(data) + 1):
        with pytest.raises(CorruptFrame, match="declares"):
            decode_frame(_frame(1, 0, wrong, payload))
    big = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(b"\x00" * (1 << 20))
    with pytest.raises(CorruptFrame):
        decode_frame(_frame(1, 0, 9, big))


def test_zstd_error_is_chained() -> None:
    f = bytearray(encode_frame(_text(12, 5000)))
    f[HEADER.size : HEADER.size + 4] = b"\x00\x00\x00\x00"  # break zstd's own magic
    with pytest.raises(CorruptFrame) as info:
        decode_frame(f)
    assert info.value.__cause__ is not None


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        out = decode_frame(data, {DICTIONARY.dict_id: DICTIONARY})
    except CorruptFrame:
        return
    assert len(out) == read_header(data).raw_size


@given(
    codec_id=st.sampled_from(sorted(CODECS)),
    dict_id=st.sampled_from([0, DICTIONARY.dict_id, 12345]),
    raw_size=st.one_of(st.integers(0, 1 << 16), st.just(0xFFFFFFFF)),
    payload=st.binary(max_size=300),
    zstd_magic=st.booleans(),
)
def test_fuzz_valid_headers_arbitrary_payload(
    codec_id: int, dict_id: int, raw_size: int, payload: bytes, zstd_magic: bool
) -> None:
    """Past a well-formed header the codec sees garbage: only CorruptFrame may come out."""
    if zstd_magic:
        payload = b"\x28\xb5\x2f\xfd" + payload  # get past zstd's magic check into its decoder
    f = _frame(codec_id, dict_id, raw_size, payload)
    try:
        out = decode_frame(f, {DICTIONARY.dict_id: DICTIONARY})
    except CorruptFrame:
        return
    assert len(out) == raw_size


@given(data=st.binary(max_size=3000), flip=st.integers(0, 10_000), mask=st.integers(1, 255))
# Found by this test: a flip that makes the zstd frame declare a content size of ~2**60.
@example(data=b"\x00\x00\x00\x00\x01\x00\x00\x00\x00", flip=1606, mask=208)
def test_fuzz_flipped_frames(data: bytes, flip: int, mask: int) -> None:
    f = bytearray(encode_frame(data, dictionary=DICTIONARY, min_gain=0))
    f[flip % len(f)] ^= mask
    try:
        out = decode_frame(f, {DICTIONARY.dict_id: DICTIONARY})
    except CorruptFrame:
        return
    assert len(out) == read_header(f).raw_size
