"""Paged KV cache with prefix caching, as vLLM v1's block pool and KV-cache manager.

Blocks are counted, not materialised: a block is either *free and empty*, *free but cached*
(its content is known by hash and sits in an LRU list for reuse until evicted), or *in use*.
Cached blocks carry a reference count; when it drops to zero the block joins the tail of the
LRU list (a request's tail blocks first, so they are evicted first, as vLLM frees them).
Allocation takes empty blocks before evicting cached ones (least recently used first).

A block whose content is already cached (another request computed the same key) is not cached
twice: if the cached copy is in use, the new block stays private (it holds the same content,
and is freed as empty); if the cached copy is idle, the new block takes its place (the idle copy
is dropped, so counts do not change). vLLM keeps both copies in its hash map
(``BlockHashToBlockMap``: "we don't de-duplicate the blocks in the cache"); a lookup returns
either, so hits are the same and only a useless duplicate is dropped early here.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from functools import partial
from itertools import compress, islice, takewhile
from operator import not_

_drain = partial(deque, maxlen=0)  # run an iterator for its effects
_minus_one = (1).__rsub__  # x -> x - 1
_plus_one = (1).__add__  # x -> x + 1


class KVCache:
    __slots__ = ("empty", "lru", "num_blocks", "refs")

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError("num_blocks must be >= 1")
        self.num_blocks = num_blocks
        self.empty = num_blocks  # free blocks holding nothing reusable
        self.refs: dict[int, int] = {}  # cached block key -> reference count
        self.lru: OrderedDict[int, None] = OrderedDict()  # cached keys with refcount 0

    @property
    def free(self) -> int:
        return self.empty + len(self.lru)

    @property
    def used(self) -> int:
        return self.num_blocks - self.empty - len(self.lru)

    def allocate(self, n: int) -> None:
        """Take ``n`` free blocks (caller checked ``n <= free``), evicting LRU cached ones."""
        take = n if n <= self.empty else self.empty
        self.empty -= take
        n -= take
        if n:
            # Evict the n least recently used (C-level loops: this is the hot path of
            # prefix-cached workloads).
            pop = self.lru.popitem
            _drain(map(self.refs.__delitem__, [pop(False)[0] for _ in range(n)]))

    def match(self, keys: list[int], max_blocks: int) -> int:
        """Number of leading ``keys`` present in the cache (at most ``max_blocks``)."""
        return len(list(takewhile(self.refs.__contains__, islice(keys, max(max_blocks, 0)))))

    def touch(self, keys: list[int]) -> None:
        """Take a reference on cached blocks (removing them from the LRU list if idle)."""
        refs, lru = self.refs, self.lru
        if len(set(keys)) == len(keys):  # distinct, as a prefix chain is: C-level loops
            counts = list(map(refs.__getitem__, keys))
            _drain(map(lru.__delitem__, compress(keys, map(not_, counts))))
            refs.update(zip(keys, map(_plus_one, counts), strict=True))
            return
        for k in keys:  # a key repeated in one request takes one reference per occurrence
            r = refs[k]
            if r == 0:
                del lru[k]
            refs[k] = r + 1

    def try_insert(self, key: int) -> bool:
        """Register a block the caller just allocated as cached under ``key``.

        Returns False (the block stays private) when an identical block is already in use.
        """
        return bool(self.insert_run([key]))

    def insert_run(self, keys: list[int]) -> list[int]:
        """Register freshly allocated blocks as cached, in order; return the keys registered.

        Every key is tried, also after one that is cached already (vLLM caches each full block
        a request computes). A key whose cached copy is in use stays private (not returned); a
        key whose cached copy is idle takes it over: the idle copy leaves the LRU list and the
        caller's block is freed as empty in its place (returned, with a reference).
        """
        refs = self.refs
        fresh = dict.fromkeys(keys, 1)
        if len(fresh) == len(keys) and refs.keys().isdisjoint(fresh):
            refs.update(fresh)
            return keys
        lru = self.lru
        out: list[int] = []
        for k in keys:
            r = refs.get(k)
            if r is None:
                refs[k] = 1
            elif r == 0:
                del lru[k]
                refs[k] = 1
                self.empty += 1
            else:
                continue
            out.append(k)
        return out

    def take(self, keys: list[int]) -> None:
        """Turn idle cached blocks into the caller's private blocks (their keys are forgotten).

        For blocks only their owner can ever hit (a request's own blocks after a preemption)."""
        refs, lru = self.refs, self.lru
        for k in keys:
            del lru[k]
            del refs[k]

    def release(self, keys: list[int], private: int) -> None:
        """Drop a request's blocks: its cached ones (reverse order) and ``private`` others."""
        if keys:
            refs = self.refs
            rev = keys[::-1]
            left = list(map(_minus_one, map(refs.__getitem__, rev)))
            refs.update(zip(rev, left, strict=True))
            self.lru.update(dict.fromkeys(compress(rev, map(not_, left))))  # the idle ones
        self.empty += private

    def check(self, referenced: dict[int, int], private_total: int) -> None:
        """Assert the pool agrees with what requests say they hold (for tests)."""
        in_use = {k: r for k, r in self.refs.items() if r > 0}
        assert in_use == referenced, "cached-block reference counts disagree with holders"
        assert all(self.refs[k] == 0 for k in self.lru), "LRU holds a referenced block"
        assert len(self.lru) == sum(1 for r in self.refs.values() if r == 0)
        assert self.used == len(in_use) + private_total, (
            f"used {self.used} != cached {len(in_use)} + private {private_total}"
        )
        assert 0 <= self.used <= self.num_blocks
