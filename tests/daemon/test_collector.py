"""The daemon's garbage-collection policy: full collections only from the maintenance tick,
within their budget, and nothing cyclic left behind for good."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agentmem.daemon.collector import BUDGET, Collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector() -> Iterator[Collector]:
    saved = gc.get_threshold()
    c = Collector()
    c.install()
    try:
        yield c
    finally:
        c.uninstall()
        gc.unfreeze()
        gc.set_threshold(*saved)


def _old_cycle() -> weakref.ref[Node]:
    """A two-node cycle that survived into the oldest generation, then dropped."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect(1)  # survivors of generation 1 move to the oldest
    return weakref.ref(a)


def test_full_collections_wait_for_the_tick(collector: Collector) -> None:
    assert gc.get_threshold()[2] > 10**9
    dead = _old_cycle()
    for _ in range(20):  # young passes alone never reach the oldest generation
        gc.collect(1)
    assert dead() is not None
    assert collector.tick()
    assert dead() is None
    assert collector.full_collections == 1
    assert collector.cpu_seconds > 0  # every pass is clocked, the young ones too


def test_a_tick_skips_when_nothing_reached_the_oldest_generation(collector: Collector) -> None:
    collector.tick()  # whatever the fixture left
    assert gc.get_count()[2] == 0
    assert not collector.tick()


def test_full_collections_stay_within_their_budget(collector: Collector) -> None:
    _old_cycle()
    assert collector.tick()
    ran_at, cost = collector._last_at, collector._last_cost
    assert cost > 0
    _old_cycle()
    assert not collector.tick(now=ran_at + 0.5 * cost / BUDGET)
    assert collector.full_collections == 1
    assert collector.tick(now=ran_at + 1.01 * cost / BUDGET)
    assert collector.full_collections == 2


def test_uninstalled_the_interpreter_collects_on_its_own_again(collector: Collector) -> None:
    collector.uninstall()
    assert gc.get_threshold()[2] == 10
    assert not collector.tick()
