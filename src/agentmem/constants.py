"""Fixed numbers of agentmem, each with the measurement or arithmetic behind it.

Numbers a deployment may want to change live in ``config.Config``; these are the ones that
decide formats (changing them moves chunk cut points or frame layouts) or bound requests.
"""

from __future__ import annotations

#: Length of a chunk id: BLAKE3-256 of the plain bytes.
ID_BYTES = 32

# --- chunking --------------------------------------------------------------------------------
# Content up to CDC_THRESHOLD bytes is one chunk (no content-defined chunking): a 1 KiB message
# costs one BLAKE3 call (~2.4 us) instead of a chunker pass. Above it, FastCDC cuts.
#
# Chunk sizes are a trade between dedup of near-duplicate prompts and per-chunk cost
# (metadata ~200 B/chunk in the index, ~2 us/chunk of Python work on ingest). Measured on
# ../shared/corpus (bench/results/chunk_sizes.md, `python bench/chunk_sizes.py`): see there for
# the table; the values below are the chosen row.
CDC_MIN_SIZE = 256
CDC_AVG_SIZE = 1024
CDC_MAX_SIZE = 8192
CDC_THRESHOLD = 4096
#: Normalised chunking level of FastCDC 2020 (pyfastcdc's default); part of the cut-point format.
CDC_NORMALIZATION = 1

# --- bounds ----------------------------------------------------------------------------------
#: Largest SMU accepted in one allocation. The original design's largest unit is a 100 MB tool
#: catalogue; 1 GiB leaves headroom while keeping one request from exhausting a 24 GiB machine.
MAX_SMU_BYTES = 1 << 30
#: Longest agent name (bytes of UTF-8).
MAX_AGENT_NAME = 256
#: Largest single conversation message.
MAX_MESSAGE_BYTES = 64 << 20

# --- hot tier --------------------------------------------------------------------------------
#: Size of one hot segment. 4 MiB holds ~3400 chunks of 1.2 KiB; a 50 MB prompt spans 13
#: segments; 100 agents' unique data (~300 MB) is ~75 segments, well under fd limits.
SEGMENT_BYTES = 4 << 20

# --- warm tier -------------------------------------------------------------------------------
#: Messages of one conversation are compressed together in groups of up to this many raw bytes:
#: single ~1 KiB messages compress 2.3x alone (4.7x with a dictionary) but whole conversations
#: 7.4x (DESIGN.md). 64 KiB keeps a random read of one message at ~60 us of decoding.
WARM_GROUP_BYTES = 64 << 10
#: Content that zstd shrinks by less than this factor is stored raw (random data: 1.0x).
MIN_COMPRESSION_GAIN = 1.05
