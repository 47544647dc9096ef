"""Golden cut points of the default chunker (the format's CDC_* constants).

Chunk ids are BLAKE3 of the bytes between cut points, so the cut points decide deduplication:
if they move, every prompt stored before is cut differently from the same prompt arriving now,
and nothing dedups against it any more. Changing a value below is therefore a format change:
it needs a format version bump and a note in docs/formats.md ("Chunk cut points"), never a
silent update of these lists. What moves them: CDC_MIN_SIZE, CDC_AVG_SIZE, CDC_MAX_SIZE,
CDC_THRESHOLD, CDC_NORMALIZATION, pyfastcdc's gear table or seed, or its FastCDC 2020 code.
"""

from __future__ import annotations

import random

from blake3 import blake3

from agentmem.chunking import default_chunker

# fmt: off
WORDS = [
    "agent", "memory", "chunk", "prompt", "tool", "message", "domain", "segment", "frame",
    "pack", "tier", "hot", "warm", "cold", "shared", "sealed", "hash", "index", "ref", "handle",
    "share", "mark", "stats", "daemon", "client", "store", "policy", "evict", "compress",
    "dictionary", "version", "context",
]

RANDOM_200K_BLAKE3 = "3b51d1fe9f6530fa9ac3c9e504a3cc4ea52ed18fc240551d234962b1c1ce7720"
RANDOM_200K_CUTS = [
    748, 1626, 3808, 6121, 8202, 9946, 10742, 13115, 15358, 17941, 22648, 25811, 26539, 28761,
    31349, 32483, 35203, 36568, 38215, 41917, 44107, 46438, 49542, 51112, 51892, 54618, 55568,
    57073, 59542, 62170, 64694, 66308, 68435, 69240, 73337, 74881, 82623, 85028, 86982, 87752,
    88505, 90584, 91708, 93375, 96140, 103097, 104147, 106296, 109816, 111238, 113838, 115022,
    118898, 120865, 124505, 129018, 130305, 132829, 133692, 135819, 137244, 138424, 141313,
    144704, 146984, 150091, 153758, 156405, 158647, 161674, 163951, 164760, 171241, 173626,
    175876, 178209, 179381, 180005, 181728, 183895, 184686, 186227, 189444, 191453, 194017,
    196883, 199311, 200000,
]

TEXT_100K_BLAKE3 = "9e3e17a1bb181315413d9f0e73d68b6e3055fae95478869e73b646baf6568f58"
TEXT_100K_CUTS = [
    3240, 6725, 8864, 11753, 14163, 16183, 19159, 20089, 22148, 24472, 32687, 34200, 37835,
    40050, 42741, 44647, 48086, 53465, 56001, 59796, 62309, 64404, 66919, 73771, 77020, 78893,
    81631, 86520, 89629, 91899, 93073, 95122, 96022, 98322, 100030,
]
# fmt: on


def random_bytes(size: int) -> bytes:
    return random.Random(2026).randbytes(size)


def generated_text() -> bytes:
    """~100 KB of numbered lines of words, from a 64-bit LCG (no library randomness)."""
    lines: list[str] = []
    size = 0
    x = 2026
    while size < 100_000:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        words = [WORDS[(x >> (5 * i)) % len(WORDS)] for i in range(4 + (x >> 60))]
        line = f"{len(lines):05d} " + " ".join(words) + ".\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def test_inputs_are_unchanged() -> None:
    # If this fails the input generators changed, not the chunker: fix the generators.
    assert blake3(random_bytes(200_000)).hexdigest() == RANDOM_200K_BLAKE3
    assert blake3(generated_text()).hexdigest() == TEXT_100K_BLAKE3


def test_random_bytes_cut_points() -> None:
    assert default_chunker().cut(random_bytes(200_000)) == RANDOM_200K_CUTS


def test_text_cut_points() -> None:
    assert default_chunker().cut(generated_text()) == TEXT_100K_CUTS


def test_threshold_and_max_size_cut_points() -> None:
    c = default_chunker()
    assert c.cut(random_bytes(4096)) == [4096]  # up to CDC_THRESHOLD: one chunk
    assert c.cut(random_bytes(6000)) == [748, 1626, 3808, 6000]  # the 200 KB input's first cuts
    assert c.cut(bytes(50_000)) == [16384, 32768, 49152, 50000]  # no content cut: max_size
