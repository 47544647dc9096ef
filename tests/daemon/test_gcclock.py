"""The daemon's garbage-collection clock counts every collection, and the full ones."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from agentmem.daemon.gcclock import GcClock


@pytest.fixture
def clock() -> Iterator[GcClock]:
    c = GcClock()
    c.install()
    c.install()  # idempotent: one callback
    gc.disable()  # only the test's own collections: the counts are exact
    try:
        yield c
    finally:
        gc.enable()
        c.uninstall()


def test_every_collection_is_counted_and_the_full_ones_apart(clock: GcClock) -> None:
    assert gc.callbacks.count(clock._clock) == 1
    gc.collect(0)
    assert clock.full_collections == 0
    young = clock.cpu_seconds
    assert young > 0
    gc.collect()
    assert clock.full_collections == 1
    assert clock.cpu_seconds > young


def test_uninstalled_it_counts_nothing(clock: GcClock) -> None:
    clock.uninstall()
    clock.uninstall()
    assert clock._clock not in gc.callbacks
    before = clock.cpu_seconds
    gc.collect()
    assert clock.cpu_seconds == before and clock.full_collections == 0


class _Node:
    """An object that can sit in a reference cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> tuple[_Node, weakref.ref[_Node]]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a, weakref.ref(b)


@pytest.fixture
def freezer() -> Iterator[GcClock]:
    c = GcClock(freeze=True, whole_interval=60.0)
    c.install()
    gc.disable()  # only the test's own collections
    try:
        yield c
    finally:
        gc.enable()
        c.uninstall()
        assert gc.get_freeze_count() == 0  # uninstalling gave the frozen objects back


def test_a_full_collection_freezes_what_it_found_reachable(freezer: GcClock) -> None:
    held, watched = _cycle()
    gc.collect()
    assert freezer.full_collections == 1
    assert gc.get_freeze_count() > 0
    assert gc.get_count() == (0, 0, 0)  # nothing left in the generations a collection walks
    # A cycle that becomes garbage after it was frozen outlives full collections...
    del held
    gc.collect()
    assert watched() is not None
    # ...until the whole collection the tick runs once the interval has passed.
    assert not freezer.tick(now=time.monotonic())
    assert freezer.tick(now=time.monotonic() + 60.0)
    assert watched() is None
    assert freezer.whole_collections == 1
    assert gc.get_freeze_count() > 0  # the whole collection's survivors are frozen again


def test_garbage_that_was_never_frozen_goes_at_the_next_full_collection(
    freezer: GcClock,
) -> None:
    gc.collect()
    held, watched = _cycle()
    del held
    gc.collect()
    assert watched() is None


def test_no_whole_collection_without_anything_frozen_since_the_last(freezer: GcClock) -> None:
    later = time.monotonic() + 120.0
    assert not freezer.tick(now=later)  # nothing frozen yet
    gc.collect()
    assert freezer.tick(now=later)
    assert not freezer.tick(now=later + 120.0)  # its own freeze does not call for another
    gc.collect()
    assert freezer.tick(now=later + 180.0)
    assert freezer.whole_collections == 2


def test_without_freeze_nothing_is_frozen(clock: GcClock) -> None:
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert not clock.tick(now=time.monotonic() + 1e6)
