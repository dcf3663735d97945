"""repository.heap.settle_heap: the two ways it leaves the garbage collector, and its young-generation threshold."""

from __future__ import annotations

import gc
import weakref

import pytest

from service.runtime.repository.heap import YOUNG_THRESHOLD, settle_heap


class Node:
    pass


def garbage_cycle() -> weakref.ref:
    """An object that only a reference cycle keeps alive: the cyclic collector's to free."""
    node = Node()
    node.me = node
    return weakref.ref(node)


@pytest.fixture
def restore_gc():
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    gc.enable()
    gc.collect()


def test_at_start_up_it_freezes_without_a_collection_and_turns_the_collector_on(restore_gc):
    # service.cli runs the start-up with the collector off: settle_heap sees it off.
    gc.disable()
    ref = garbage_cycle()
    settle_heap()
    assert gc.isenabled()
    assert ref() is not None  # frozen as it was: no full collection at start-up
    assert gc.get_freeze_count() > 0


def test_after_a_reload_it_collects_cycles_before_freezing(restore_gc):
    ref = garbage_cycle()
    settle_heap()
    assert gc.isenabled()
    assert ref() is None


def test_it_collects_the_young_generation_less_often(restore_gc):
    gc.set_threshold(700, 10, 10)
    settle_heap()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
