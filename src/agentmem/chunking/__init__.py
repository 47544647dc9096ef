"""Content-defined chunking: a buffer in, cut points out. Pure; no I/O.

The cut points decide deduplication: a change here that moves them silently ruins dedup of
everything stored before, so ``tests/golden`` pins them on seeded input.
"""

from __future__ import annotations

from agentmem.chunking.fastcdc import Chunker, FastCDCChunker, default_chunker

__all__ = ["Chunker", "FastCDCChunker", "default_chunker"]
