"""FastCDC (2020) through ``pyfastcdc``'s Cython core: ~1.5 GB/s here, 300x pure Python."""

from __future__ import annotations

from typing import Protocol

from pyfastcdc import FastCDC

from agentmem import constants

Buffer = bytes | bytearray | memoryview


class Chunker(Protocol):
    """Splits a buffer into chunks; returns the end offset of each chunk, ascending.

    The last end offset equals ``len(buf)``; an empty buffer gives ``[]``; a buffer of at
    most ``threshold`` bytes is one chunk.
    """

    threshold: int

    def cut(self, buf: Buffer) -> list[int]: ...


class FastCDCChunker:
    """Content-defined chunker; content up to ``threshold`` bytes is one chunk.

    Not thread-safe (the underlying FastCDC object is not); create one per thread.
    The buffer is only read, and not kept.
    """

    __slots__ = ("_cdc", "avg_size", "max_size", "min_size", "threshold")

    def __init__(
        self,
        *,
        min_size: int = constants.CDC_MIN_SIZE,
        avg_size: int = constants.CDC_AVG_SIZE,
        max_size: int = constants.CDC_MAX_SIZE,
        threshold: int = constants.CDC_THRESHOLD,
    ) -> None:
        if not 64 <= min_size <= avg_size <= max_size:
            raise ValueError("need 64 <= min_size <= avg_size <= max_size")
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        self.min_size = min_size
        self.avg_size = avg_size
        self.max_size = max_size
        self.threshold = threshold
        self._cdc = FastCDC(
            avg_size,
            min_size=min_size,
            max_size=max_size,
            normalized_chunking=constants.CDC_NORMALIZATION,
        )

    def cut(self, buf: Buffer) -> list[int]:
        """End offsets of the chunks of ``buf``."""
        n = len(buf)
        if n == 0:
            return []
        if n <= self.threshold:
            return [n]
        return [c.offset + c.length for c in self._cdc.cut_buf(buf)]


def default_chunker() -> FastCDCChunker:
    """A chunker with the format's constants (what the store uses)."""
    return FastCDCChunker()
