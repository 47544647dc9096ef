"""Codec: frames (header + payload), zstd with trained dictionaries, and the backend seam.

Pure functions over bytes; no file or socket I/O. ``encode_frame`` / ``decode_frame`` are the
entry points; ``CODECS`` / ``register_codec`` are where a hardware compressor plugs in;
``DictionarySet`` holds a store's dictionaries and trains one per SMU type. Formats are in
``docs/formats.md`` and pinned by ``tests/golden/test_frame_golden.py``.
"""

from __future__ import annotations

from agentmem.codec.backends import (
    CODECS,
    RAW_CODEC_ID,
    ZSTD_CODEC_ID,
    Codec,
    NullCodec,
    ZstdCodec,
    codec_uses,
    register_codec,
    release_contexts,
)
from agentmem.codec.dictionaries import (
    Buffer,
    Dictionary,
    DictionarySet,
    dictionary_id,
    train_dictionary,
)
from agentmem.codec.frame import (
    FRAME_MAGIC,
    FRAME_VERSION,
    HEADER,
    FrameHeader,
    decode_frame,
    encode_frame,
    read_header,
)

__all__ = [
    "CODECS",
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "HEADER",
    "RAW_CODEC_ID",
    "ZSTD_CODEC_ID",
    "Buffer",
    "Codec",
    "Dictionary",
    "DictionarySet",
    "FrameHeader",
    "NullCodec",
    "ZstdCodec",
    "codec_uses",
    "decode_frame",
    "dictionary_id",
    "encode_frame",
    "read_header",
    "register_codec",
    "release_contexts",
    "train_dictionary",
]
