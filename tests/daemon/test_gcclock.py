"""The daemon's garbage-collection clock counts every collection, and the full ones."""

from __future__ import annotations

import gc
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
