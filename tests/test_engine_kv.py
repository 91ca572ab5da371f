"""KV block pool with prefix caching: hand-checked cases."""

from __future__ import annotations

import pytest

from fleetsched.engine.kv_cache import KVCache


def test_allocate_prefers_empty_blocks_then_evicts_lru() -> None:
    kv = KVCache(4)
    kv.allocate(2)
    assert kv.try_insert(11) and kv.try_insert(12)
    kv.release([11, 12], 0)  # both cached, idle; 12 freed first (tail first)
    assert kv.free == 4 and kv.used == 0 and list(kv.lru) == [12, 11]
    kv.allocate(2)  # two empty blocks remain: nothing evicted
    assert set(kv.refs) == {11, 12}
    kv.allocate(1)  # now evict the LRU head: the request's tail block 12
    assert set(kv.refs) == {11}
    assert kv.free == 1


def test_match_touch_and_refcounts() -> None:
    kv = KVCache(8)
    kv.allocate(3)
    for k in (1, 2, 3):
        assert kv.try_insert(k)
    assert not kv.try_insert(2)  # duplicate stays private
    assert kv.match([1, 2, 3, 4], 10) == 3
    assert kv.match([1, 2, 3, 4], 2) == 2
    assert kv.match([9, 2], 10) == 0
    kv.touch([1, 2])  # a second holder
    kv.release([1, 2, 3], 0)
    assert kv.refs == {1: 1, 2: 1, 3: 0} and list(kv.lru) == [3]
    kv.release([1, 2], 0)
    assert list(kv.lru) == [3, 2, 1]
    kv.touch([1])  # reuse an idle cached block
    assert list(kv.lru) == [3, 2] and kv.used == 1


def test_check_detects_leak() -> None:
    kv = KVCache(4)
    kv.allocate(2)
    kv.check({}, 2)
    with pytest.raises(AssertionError):
        kv.check({}, 1)


def test_insert_run_caches_the_keys_after_one_already_cached() -> None:
    kv = KVCache(10)
    kv.allocate(3)
    assert kv.insert_run([1, 2, 3]) == [1, 2, 3]
    kv.allocate(3)
    # 2 is cached and in use: that block stays private; 4 and 5 after it are cached all the same.
    assert kv.insert_run([4, 2, 5]) == [4, 5]
    assert kv.refs == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    kv.release([1, 2, 3], 0)
    kv.release([4, 5], 1)  # the private duplicate of 2 comes back empty
    assert kv.used == 0 and kv.empty == 5 and list(kv.lru) == [3, 2, 1, 5, 4]
    # A key whose cached copy is idle takes it over: the copy leaves the LRU list and the
    # caller's new block is freed empty in its place, so counts do not change.
    kv.allocate(1)
    assert kv.insert_run([2]) == [2]
    assert list(kv.lru) == [3, 1, 5, 4] and kv.empty == 5 and kv.used == 1
    kv.check({2: 1}, 0)


def test_insert_run_caches_a_key_repeated_in_the_run_once() -> None:
    kv = KVCache(10)
    kv.allocate(3)
    # The second 7 holds the same content as the first, which is in use: it stays private.
    assert kv.insert_run([7, 8, 7]) == [7, 8]
    assert kv.refs == {7: 1, 8: 1}
    kv.check({7: 1, 8: 1}, 1)
