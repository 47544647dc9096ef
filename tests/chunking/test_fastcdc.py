"""Properties of the FastCDC chunker: the cut-point contract, and locality under edits."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmem import constants
from agentmem.chunking import FastCDCChunker, default_chunker

# (min, avg, max, threshold): the format's sizes, the smallest pyfastcdc accepts with every
# buffer cut content-defined, and a coarse one. Thresholds stay <= max (see constants.py).
CONFIGS = [
    (
        constants.CDC_MIN_SIZE,
        constants.CDC_AVG_SIZE,
        constants.CDC_MAX_SIZE,
        constants.CDC_THRESHOLD,
    ),
    (64, 256, 2048, 0),
    (1024, 4096, 32768, 8192),
]

configs = st.sampled_from(CONFIGS)


def chunker(cfg: tuple[int, int, int, int]) -> FastCDCChunker:
    mn, avg, mx, threshold = cfg
    return FastCDCChunker(min_size=mn, avg_size=avg, max_size=mx, threshold=threshold)


def seeded(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Hypothesis' own binary is low-entropy (runs of zeros: cuts forced at max_size); seeded random
# bytes have content-defined cuts; repeated text sits between the two.
buffers = st.one_of(
    st.binary(max_size=40_000),
    st.builds(seeded, st.integers(0, 2**32), st.integers(0, 200_000)),
    st.builds(lambda s, k: s * k, st.binary(min_size=1, max_size=300), st.integers(1, 500)),
)


def pieces(buf: bytes, cuts: list[int]) -> list[bytes]:
    out = []
    start = 0
    for end in cuts:
        out.append(buf[start:end])
        start = end
    return out


@settings(deadline=None)
@given(cfg=configs, buf=buffers)
def test_cut_points_ascend_to_the_end(cfg: tuple[int, int, int, int], buf: bytes) -> None:
    cuts = chunker(cfg).cut(buf)
    if not buf:
        assert cuts == []
        return
    assert cuts[-1] == len(buf)
    assert all(a < b for a, b in zip([0, *cuts], cuts, strict=False))


@settings(deadline=None)
@given(cfg=configs, buf=buffers)
def test_chunks_are_within_bounds_but_the_last(cfg: tuple[int, int, int, int], buf: bytes) -> None:
    mn, _, mx, _ = cfg
    sizes = [len(p) for p in pieces(buf, chunker(cfg).cut(buf))]
    assert all(mn <= n <= mx for n in sizes[:-1])
    assert all(1 <= n <= mx for n in sizes[-1:])


@settings(deadline=None)
@given(cfg=configs, data=st.data())
def test_content_up_to_threshold_is_one_chunk(
    cfg: tuple[int, int, int, int], data: st.DataObject
) -> None:
    threshold = cfg[3]
    buf = data.draw(st.binary(min_size=1, max_size=max(threshold, 1)))
    if len(buf) <= threshold:
        assert chunker(cfg).cut(buf) == [len(buf)]


def test_threshold_boundary() -> None:
    c = default_chunker()
    t = constants.CDC_THRESHOLD
    assert c.cut(seeded(1, t)) == [t]
    assert c.cut(seeded(1, t + 1))[-1] == t + 1
    assert c.cut(b"") == []


@settings(deadline=None)
@given(cfg=configs, buf=buffers)
def test_cutting_is_deterministic(cfg: tuple[int, int, int, int], buf: bytes) -> None:
    c = chunker(cfg)
    first = c.cut(buf)
    assert c.cut(buf) == first  # the same chunker, reused
    assert chunker(cfg).cut(buf) == first  # a fresh one
    assert c.cut(bytearray(buf)) == first
    assert c.cut(memoryview(buf)) == first


@settings(deadline=None, max_examples=60)
@given(
    cfg=configs,
    seed=st.integers(0, 2**32),
    size=st.integers(600_000, 800_000),
    where=st.floats(0.25, 0.75),
    inserted=st.binary(min_size=1, max_size=500),
)
def test_an_insert_disturbs_only_the_chunks_around_it(
    cfg: tuple[int, int, int, int], seed: int, size: int, where: float, inserted: bytes
) -> None:
    """What CDC exists for: an edit moves nearby cut points only, so the rest still dedups."""
    c = chunker(cfg)
    buf = seeded(seed, size)
    pos = int(size * where)
    edited = buf[:pos] + inserted + buf[pos:]
    before, after = c.cut(buf), c.cut(edited)

    # A cut at i looks at the byte at i, so chunks ending strictly before the edit are the same.
    kept = [e for e in before if e < pos]
    assert after[: len(kept)] == kept

    # After the edit the chunker falls back into step with the original cut points within a
    # chunk or two (over 3000 random trials: at most ~2 * max_size bytes lost); 4 * max_size
    # bounds the unlucky tail, and is under a quarter of the buffer for every config here.
    now = set(pieces(edited, after))
    tail = [p for p, e in zip(pieces(buf, before), before, strict=True) if e >= pos]
    lost = sum(len(p) for p in tail if p not in now)
    assert lost <= 4 * cfg[2] < size / 4


def test_default_chunker_uses_the_format_constants() -> None:
    c = default_chunker()
    assert (c.min_size, c.avg_size, c.max_size, c.threshold) == (
        constants.CDC_MIN_SIZE,
        constants.CDC_AVG_SIZE,
        constants.CDC_MAX_SIZE,
        constants.CDC_THRESHOLD,
    )


def test_format_constants_are_consistent() -> None:
    assert 64 <= constants.CDC_MIN_SIZE <= constants.CDC_AVG_SIZE <= constants.CDC_MAX_SIZE
    # Whole-hashed content must not exceed the largest content-defined chunk.
    assert constants.CDC_THRESHOLD <= constants.CDC_MAX_SIZE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_size": 32},  # below 64
        {"min_size": 2048, "avg_size": 1024},  # min > avg
        {"avg_size": 8192, "max_size": 4096},  # avg > max
        {"min_size": 64, "avg_size": 128, "max_size": 1024},  # avg below pyfastcdc's 256
        {"min_size": 64, "avg_size": 256, "max_size": 512},  # max below pyfastcdc's 1024
        {"min_size": 2 << 20, "avg_size": 2 << 20, "max_size": 2 << 20},  # min above 1 MiB
    ],
)
def test_bad_sizes_raise_value_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - two sources of messages (ours, pyfastcdc's)
        FastCDCChunker(**kwargs)
