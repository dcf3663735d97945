"""repository.heap.settle_heap: the two ways it leaves the garbage collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from service.runtime.repository.heap import settle_heap


class Node:
    pass


def garbage_cycle() -> weakref.ref:
    """An object that only a reference cycle keeps alive: the cyclic collector's to free."""
    node = Node()
    node.me = node
    return weakref.ref(node)


@pytest.fixture
def restore_gc():
    yield
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
