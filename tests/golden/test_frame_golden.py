"""Golden frames: exact bytes of frames for fixed inputs.

A change in these bytes is a format change: stored frames would stop decoding, or decode
differently. It must come with a new FRAME_VERSION (and a reader for the old one), a new golden
entry and an update of docs/formats.md, never with an edit of the hex below.

One exception, spelled out so it is not mistaken for a format change: the zstd *payload* bytes
depend on the zstd encoder, and a zstandard upgrade may change them while every old frame still
decodes. ``test_golden_frames_decode`` is the compatibility guarantee and must keep passing
unchanged; only then may ``test_encoder_reproduces_golden_frames``'s payload be re-pinned.
"""

from __future__ import annotations

import pytest

from agentmem.codec import FRAME_VERSION, FrameHeader, decode_frame, encode_frame, read_header

# 48 incompressible bytes (random.Random(20240601).randbytes(48)): adaptive skip stores them raw.
RAW_INPUT = bytes.fromhex(
    "9e04351e32829874b5b5946b92c2c879a429f4c8dbaa42422d53889595797aeb"
    "1cfb60da58bdf33c37c5886c23615c51"
)
RAW_FRAME = bytes.fromhex(
    "414d01"  # magic "AM", version 1
    "00"  # codec 0: raw
    "00000000"  # dict_id 0: none
    "30000000"  # raw_size 48, little-endian
    "9e04351e32829874b5b5946b92c2c879a429f4c8dbaa42422d53889595797aeb"
    "1cfb60da58bdf33c37c5886c23615c51"
)

# An agent message, three times: zstd at level 3, no dictionary.
ZSTD_INPUT = (
    b'{"role": "assistant", "content": "I will run the tests again.", "tool_calls": '
    b'[{"id": "call_1", "function": {"name": "bash", "arguments": "pytest -q tests/"}}]}\n'
) * 3
ZSTD_FRAME = bytes.fromhex(
    "414d01"  # magic "AM", version 1
    "01"  # codec 1: zstd
    "00000000"  # dict_id 0: none
    "e3010000"  # raw_size 483, little-endian
    # zstd frame (RFC 8878): magic, descriptor 0x00 (no content size, checksum or dict id) ...
    "28b52ffd00001d04006247181a704bdb84f81655a3ada6884dfb2e59eae77ac47b0d61fabf2eb0808668ed84"
    "86e01e8cf7e6b212850a6362c13d3bf34da8cfae450151a0b3c399b32a1e4453eac1224cf0b839fb52e9dba5"
    "4e1539ced09bbde9fc02efc566c48c3ff3d4a4ce020b003f2453e60c1c5fb0f19571a046bca1d7508b3437c0"
    "6ac34d2d76d79907"
)

GOLDEN = [
    pytest.param(RAW_INPUT, RAW_FRAME, FrameHeader(codec=0, dict_id=0, raw_size=48), id="raw"),
    pytest.param(ZSTD_INPUT, ZSTD_FRAME, FrameHeader(codec=1, dict_id=0, raw_size=483), id="zstd"),
]


def test_frame_version() -> None:
    assert FRAME_VERSION == 1


@pytest.mark.parametrize(("plain", "frame", "header"), GOLDEN)
def test_golden_frames_decode(plain: bytes, frame: bytes, header: FrameHeader) -> None:
    assert read_header(frame) == header
    assert decode_frame(frame) == plain


@pytest.mark.parametrize(("plain", "frame", "header"), GOLDEN)
def test_encoder_reproduces_golden_frames(plain: bytes, frame: bytes, header: FrameHeader) -> None:
    assert encode_frame(plain, level=3).hex() == frame.hex()
