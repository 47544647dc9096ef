"""The daemon's garbage collection: every collection counted; full collections only from the
maintenance tick, once the heap has grown enough and within their budget."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agentmem.daemon.collector import Collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def saved_gc() -> Iterator[None]:
    saved = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def _installed(growth: float, budget: float = 0.01) -> Collector:
    c = Collector(growth=growth, budget=budget)
    c.install()
    c.install()  # idempotent: one callback
    assert gc.callbacks.count(c._clock) == 1
    return c


def _old_cycle() -> weakref.ref[Node]:
    """A two-node cycle that survived into the oldest generation, then dropped."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(1)  # survivors of generation 1 move to the oldest
    return weakref.ref(a)


def test_an_old_cycle_waits_for_the_heap_to_grow(saved_gc: None) -> None:
    c = _installed(growth=0.05)
    try:
        assert gc.get_threshold()[2] > 10**9
        dead = _old_cycle()
        for _ in range(20):  # young passes never reach the oldest generation
            gc.collect(1)
        assert not c.tick()  # and the heap has not grown
        assert dead() is not None
        grown = [Node() for _ in range(max(10_000, c._base // 10))]  # over 5 % more blocks
        assert c.tick()
        assert dead() is None
        assert c.full_collections == 1
        assert not c.tick()  # measured from the heap after that collection
        del grown
    finally:
        c.uninstall()


def test_full_collections_stay_within_their_budget(saved_gc: None) -> None:
    c = _installed(growth=0.0)  # any heap is grown enough: the budget alone decides
    try:
        assert c.tick()
        ran_at, cost = c._last_at, c._last_cost
        assert cost > 0
        assert not c.tick(now=ran_at + 0.5 * cost / c.budget)
        assert c.tick(now=ran_at + 1.01 * cost / c.budget)
        assert c.full_collections == 2
    finally:
        c.uninstall()


def test_every_collection_is_counted_and_the_full_ones_apart(saved_gc: None) -> None:
    c = _installed(growth=1.0)
    try:
        gc.collect(0)
        young = c.cpu_seconds
        assert young > 0 and c.full_collections == 0
        gc.collect()  # anyone's full collection is counted
        assert c.full_collections == 1 and c.cpu_seconds > young
    finally:
        c.uninstall()


def test_uninstalled_the_interpreter_collects_on_its_own_again(saved_gc: None) -> None:
    c = _installed(growth=0.0)
    c.uninstall()
    c.uninstall()
    assert gc.get_threshold()[2] == 10
    assert c._clock not in gc.callbacks
    before = c.cpu_seconds
    assert not c.tick()
    gc.collect()
    assert c.cpu_seconds == before and c.full_collections == 0
