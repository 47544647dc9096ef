"""Fixed numbers of agentmem, each with the measurement or arithmetic behind it.

Numbers a deployment may want to change live in ``config.Config``; these are the ones that
decide formats (changing them moves chunk cut points or frame layouts) or bound requests.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the client must not import typing (see ids.py)

if TYPE_CHECKING:
    from typing import Final

#: Length of a chunk id: BLAKE3-256 of the plain bytes.
ID_BYTES = 32

# --- chunking --------------------------------------------------------------------------------
# Chunk sizes trade dedup of near-duplicate prompts against per-chunk cost: ~200 B of index
# metadata and ~2 us of Python work (BLAKE3 + dict) per chunk. Measured on ../shared/corpus by
# `.venv/bin/python bench/chunk_sizes.py` (table in bench/results/chunk_sizes.md); FastCDC's real
# mean chunk is about avg + min:
#
#   min/avg/max      mean chunk  100 agents' prompt  version k-1 covered  metadata/MB  ingest
#   256/1024/8192      1244 B        20.4x               38 %              161 KB      ~470 MB/s
#   512/2048/16384     2498 B        14.0x               26 %               80 KB      ~690 MB/s
#   1024/4096/32768    5558 B         7.5x               16 %               36 KB      ~990 MB/s
#
# (100 agents: one 132 KB Claude Code prompt each, ~340 B of per-agent session fields in place;
# ingest: cut + BLAKE3 + dict insert over 20 MB of conversation JSON, 2 cores.) 512/2048/16384 is
# the cheapest row that keeps >= 10x on the 100-agent prompt (14.0x; 12.8x with one `<env>`
# block) and >= 400 MB/s: half the chunks of 256/1024/8192 (8 % of the data in metadata, not
# 16 %) with room for the store's own per-chunk work, for 26 % rather than 38 % of a new
# prompt version found. 64/256/2048 finds 63 % but costs 67 % in metadata at ~200 MB/s.
CDC_MIN_SIZE = 512
CDC_AVG_SIZE = 2048
CDC_MAX_SIZE = 16384
# Content up to CDC_THRESHOLD bytes is one chunk: one BLAKE3 call, no chunker pass. At these
# sizes CDC would typically cut such a buffer into 1-2 chunks, and hashing it whole found the same
# version coverage on the corpus's prompt histories (26 % at thresholds 0..4096, 19 % at 8192)
# while message-by-message ingest of conversations made 685 chunks/MB instead of 796 (-14 %).
# Keep it <= CDC_MAX_SIZE: then no chunk, whole or cut, is larger than CDC_MAX_SIZE.
CDC_THRESHOLD = 4096
#: A conversation message up to this many bytes is one chunk, found by its whole content; a
#: longer one is cut as other content is. Cutting messages of 4-16 KiB found 5-6 % more
#: duplicate bytes in conversations (the corpus's 590 trajectories: 76.3 MB unique instead of
#: 80.6 of 84.9; seed-profile histories: 79.9 instead of 84.7 of 90.0) and cost ~100 bytes of
#: index a message more (338 -> 238 B on the corpus, 314 -> 209 on seed histories: an entry,
#: an id and an index slot a cut chunk, a node in the node index a cut message), more than
#: the bytes it saves once compressed: a store holding those conversations demoted took
#: 24.4 MB (index and frames) cutting at 4 KiB, 20.1-20.3 MB at 16 KiB. Prompts and tools,
#: which agents hold in near-copies, are cut from CDC_THRESHOLD as before. At CDC_MAX_SIZE, no
#: chunk, whole or cut, is larger than CDC_MAX_SIZE still.
MESSAGE_WHOLE_MAX = CDC_MAX_SIZE
#: Normalised chunking level of FastCDC 2020 (pyfastcdc's default); part of the cut-point format.
CDC_NORMALIZATION: Final = 1

# --- bounds ----------------------------------------------------------------------------------
#: Largest SMU accepted in one allocation. The original design's largest unit is a 100 MB tool
#: catalogue; 1 GiB leaves headroom while keeping one request from exhausting a 24 GiB machine.
MAX_SMU_BYTES = 1 << 30
#: Longest agent name (bytes of UTF-8).
MAX_AGENT_NAME = 256
#: Most names a domain may publish (each holds its content alive).
MAX_PUBLISHED_NAMES = 4096
#: Largest single conversation message.
MAX_MESSAGE_BYTES = 64 << 20

# --- hot tier --------------------------------------------------------------------------------
#: Size of one hot segment. 4 MiB holds ~1700 chunks of 2.5 KiB; content over a quarter of it
#: gets a dedicated segment (a 50 MB prompt is one segment, so it reads as one view); 100
#: agents' unique data (~300 MB) is ~75 segments, well under fd limits.
SEGMENT_BYTES = 4 << 20

# --- warm tier -------------------------------------------------------------------------------
#: Messages of one conversation are compressed together in groups of up to this many raw bytes:
#: single ~1 KiB messages compress 2-3x alone but whole conversations 7.4x (DESIGN.md). Most of
#: the corpus's conversations are shorter than 256 KiB, so beyond that the size matters for long
#: histories only, and there it pays: a seed-profile history of 30 MB (prose letters permuted,
#: the dictionary trained on another agent's) at level 6 is 7.31x in 256 KiB groups, 8.43x in
#: 1 MiB, 8.83x in 2 MiB, compressed at 142, 206 and 206 MB/s (level 3: 6.77x, 7.68x, 7.98x).
#: The price is a random read of one warm message: its group is decoded and verified whole,
#: ~0.4 ms of decoding for 1 MiB against ~0.1 for 256 KiB (bench/results/store.md).
WARM_GROUP_BYTES = 1 << 20
#: Decoded groups a tier keeps for the next read, in plain bytes (at least one group): reading
#: a conversation in order decodes each group once.
DECODED_CACHE_BYTES = 2 << 20
#: Content that zstd shrinks by less than this factor is stored raw (random data: 1.0x).
MIN_COMPRESSION_GAIN = 1.05
