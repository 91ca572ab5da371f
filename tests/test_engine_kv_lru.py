"""The block pool's run-queue LRU against a plain one: an ordered dict of idle blocks.

``KVCache`` holds its LRU list as runs of released keys with stamps (see its docstring). The
reference below is the textbook structure, one ordered-dict node per idle block, written for
clarity. Random sequences of what an engine does to the pool (admit with prefix hits, cache
decode blocks, take own blocks back, release, evict) must leave both in the same state after
every operation: the same reference counts, the same free and empty counts, and the same LRU
order, so the same blocks are evicted. Compaction is forced often by a zero slack.
"""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.engine.kv_cache import KVCache


class Reference:
    """vLLM's free-block queue semantics, one node per idle cached block."""

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.empty = num_blocks
        self.refs: dict[int, int] = {}
        self.lru: OrderedDict[int, None] = OrderedDict()

    @property
    def free(self) -> int:
        return self.empty + len(self.lru)

    def allocate(self, n: int) -> None:
        take = min(n, self.empty)
        self.empty -= take
        for _ in range(n - take):
            key, _ = self.lru.popitem(last=False)
            del self.refs[key]

    def match(self, keys: list[int]) -> int:
        n = 0
        while n < len(keys) and keys[n] in self.refs:
            n += 1
        return n

    def touch(self, keys: list[int]) -> None:
        for k in keys:
            if self.refs[k] == 0:
                del self.lru[k]
            self.refs[k] += 1

    def insert_run(self, keys: list[int]) -> list[int]:
        out = []
        for k in keys:
            r = self.refs.get(k)
            if r is None:
                self.refs[k] = 1
            elif r == 0:
                self.take_over(k)
            else:
                continue
            out.append(k)
        return out

    def take_over(self, k: int) -> None:
        del self.lru[k]
        self.refs[k] = 1
        self.empty += 1

    def take(self, keys: list[int]) -> None:
        for k in keys:
            del self.lru[k]
            del self.refs[k]

    def release(self, keys: list[int], private: int) -> None:
        for k in reversed(keys):
            self.refs[k] -= 1
            if self.refs[k] == 0:
                self.lru[k] = None
        self.empty += private


KINDS = ["admit"] * 3 + ["release"] * 2 + ["decode", "take"]


def _same(kv: KVCache, ref: Reference, holders: list[tuple[list[int], int]]) -> None:
    assert kv.refs == ref.refs
    assert kv.lru == list(ref.lru)
    assert (kv.empty, kv.free, kv.idle) == (ref.empty, ref.free, len(ref.lru))
    referenced: dict[int, int] = {}
    for held, _ in holders:
        for k in held:
            referenced[k] = referenced.get(k, 0) + 1
    kv.check(referenced, sum(p for _, p in holders))


@settings(max_examples=300, deadline=None)
@given(
    num_blocks=st.integers(4, 24),
    universe=st.integers(1, 8),
    slack=st.sampled_from([0, 1, 4096]),
    rnd=st.randoms(use_true_random=False),
    n_ops=st.integers(0, 200),
)
def test_run_queue_lru_behaves_as_one_ordered_list(
    num_blocks: int, universe: int, slack: int, rnd: random.Random, n_ops: int
) -> None:
    # The operations come from a seeded generator: hypothesis' own integer draws favour 0
    # and small values, which rarely reach a stale entry during an eviction.
    ops = [(rnd.choice(KINDS), rnd.randrange(10**6), rnd.randint(1, 8)) for _ in range(n_ops)]
    kv, ref = KVCache(num_blocks, compact_slack=slack), Reference(num_blocks)
    holders: list[tuple[list[int], int]] = []
    for op, r, size in ops:
        if op == "admit":
            # A prompt of ``size`` blocks from one of a few conversations (so prefixes of
            # every length repeat); its cached prefix is touched, the rest allocated and cached.
            keys = [(r % universe) * 64 + i for i in range(size)]
            hits = kv.match(keys, len(keys))
            assert hits == ref.match(keys)
            touched = keys[:hits]
            idle_hits = sum(1 for k in touched if ref.refs[k] == 0)
            need = len(keys) - hits
            if need + idle_hits > ref.free:
                continue
            kv.touch(touched)
            ref.touch(touched)
            kv.allocate(need)
            ref.allocate(need)
            got = kv.insert_run(keys[hits:])
            assert got == ref.insert_run(keys[hits:])
            holders.append((touched + got, need - len(got)))
        elif op == "release" and holders:
            held, private = holders.pop(r % len(holders))
            kv.release(held, private)
            ref.release(held, private)
        elif op == "decode" and holders and ref.free:
            # A decode step fills a block and caches it under a key (Instance._cache_decodes).
            key = (r % universe) * 64 + r % 13
            kv.allocate(1)
            ref.allocate(1)
            held, private = holders[r % len(holders)]
            cached = ref.insert_run([key]) == [key]
            assert kv.try_insert(key) == cached
            if cached:
                held.append(key)
            else:
                holders[r % len(holders)] = (held, private + 1)
        elif op == "take" and ref.lru:
            # A preempted request takes its own idle blocks back as private ones.
            keys = list(ref.lru)[r % len(ref.lru) :][:size]
            kv.take(keys)
            ref.take(keys)
            holders.append(([], len(keys)))
        _same(kv, ref, holders)


def test_stale_entries_are_skipped_and_compaction_keeps_the_order() -> None:
    kv = KVCache(10, compact_slack=0)
    kv.allocate(4)
    assert kv.insert_run([1, 2, 3, 4]) == [1, 2, 3, 4]
    kv.release([1, 2], 0)  # run 1: [2, 1]
    kv.release([3, 4], 0)  # run 2: [4, 3]
    kv.touch([2, 4, 3])  # each leaves a stale entry behind
    assert kv.lru == [1]
    kv.release([4], 0)  # 4 comes back at the tail: 2 live entries, 3 stale, so a compaction
    assert kv.lru == [1, 4]
    assert kv._slots == 2  # type: ignore[attr-defined]
    kv.allocate(6 + 2)  # 6 empty blocks, then evict 1 and 4
    assert kv.lru == [] and set(kv.refs) == {2, 3}
    kv.check({2: 1, 3: 1}, 8)  # the 8 blocks just allocated are private


def test_a_stale_entry_does_not_evict_a_block_idle_again_later() -> None:
    kv = KVCache(4)
    kv.allocate(2)
    kv.insert_run([1, 2])
    kv.release([1, 2], 0)  # run 1: [2, 1]
    kv.touch([1])  # run 1's entry for 1 is stale now
    kv.allocate(1)
    kv.insert_run([3])
    kv.release([1, 3], 0)  # run 2: [3, 1]
    assert kv.lru == [2, 3, 1]
    kv.allocate(1 + 2)  # the empty one, then 2 and 3: not 1, whose entry in run 1 is stale
    assert set(kv.refs) == {1} and kv.lru == [1]


def test_take_refuses_a_block_in_use() -> None:
    kv = KVCache(4)
    kv.allocate(1)
    kv.insert_run([7])
    with pytest.raises(AssertionError, match="in use"):
        kv.take([7])
