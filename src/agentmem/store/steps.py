"""Work in steps: long store operations as generators that a caller runs a slice at a time.

The daemon serves every client from one loop, so an operation of seconds (a statistics walk,
a history demoted or promoted, the journal rewritten) is a generator that yields after a
bounded step; the loop runs steps until its deadline and serves requests in between. These
are the few ways of running such a generator, and of cutting chunks into steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from agentmem.store.records import ChunkEntry

_T = TypeVar("_T")


def run(steps: Generator[Any, None, _T]) -> _T:
    """Run ``steps`` to their end; their result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def run_until(
    steps: Generator[Any, None, _T],
    deadline: float,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[bool, _T | None]:
    """Run steps (at least one) until ``clock()`` reaches ``deadline``: ``(True, result)``
    once they ended, ``(False, None)`` while some are left. What a step raises propagates."""
    try:
        while True:
            next(steps)
            if clock() >= deadline:
                return False, None
    except StopIteration as done:
        return True, done.value


def resume(
    steps: Generator[Any, None, _T],
    deadline: float,
    clock: Callable[[], float],
    ended: Callable[[], object],
) -> _T | None:
    """:func:`run_until` for work kept between maintenance passes (a journal rewrite, a
    segment compaction): ``ended()`` (the holder lets it go) once the steps ended or one
    raised (which propagates); their result, None while some are left."""
    try:
        done, result = run_until(steps, deadline, clock)
    except BaseException:
        ended()
        raise
    if done:
        ended()
    return result


def batches(
    entries: Sequence[ChunkEntry], limit: int, wanted: Callable[[ChunkEntry], bool]
) -> Iterator[list[ChunkEntry]]:
    """Consecutive runs of ``entries`` of up to ``limit`` plain bytes (at least one entry, as
    ``warm.group_spans`` cuts), each holding those that ``wanted`` still says yes to when the
    run is cut: a caller that moves each run before asking for the next sees its moves, and
    what others did between its steps. Runs left empty are skipped."""
    i = 0
    n = len(entries)
    while i < n:
        batch: list[ChunkEntry] = []
        nbytes = 0
        while i < n and (not batch or nbytes + entries[i].size <= limit):
            e = entries[i]
            i += 1
            if wanted(e):
                batch.append(e)
                nbytes += e.size
        if batch:
            yield batch
