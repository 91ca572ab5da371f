"""Paged KV cache with prefix caching, as vLLM v1's block pool and KV-cache manager.

Blocks are counted, not materialised: a block is either *free and empty*, *free but cached*
(its content is known by hash and sits in an LRU list for reuse until evicted), or *in use*.
Cached blocks carry a reference count; when it drops to zero the block joins the tail of the
LRU list (a request's tail blocks first, so they are evicted first, as vLLM frees them).
Allocation takes empty blocks before evicting cached ones (least recently used first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


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
        lru, refs = self.lru, self.refs
        while n:
            key, _ = lru.popitem(last=False)
            del refs[key]
            n -= 1

    def match(self, keys: list[int], max_blocks: int) -> int:
        """Number of leading ``keys`` present in the cache (at most ``max_blocks``)."""
        refs = self.refs
        n = 0
        limit = min(max_blocks, len(keys))
        while n < limit and keys[n] in refs:
            n += 1
        return n

    def touch(self, keys: Iterable[int]) -> None:
        """Take a reference on cached blocks (removing them from the LRU list if idle)."""
        refs, lru = self.refs, self.lru
        for k in keys:
            r = refs[k]
            if r == 0:
                del lru[k]
            refs[k] = r + 1

    def try_insert(self, key: int) -> bool:
        """Register a block the caller just allocated as cached under ``key``.

        Returns False (the block stays private) when an identical block is already cached.
        """
        if key in self.refs:
            return False
        self.refs[key] = 1
        return True

    def insert_run(self, keys: list[int]) -> int:
        """Register freshly allocated blocks as cached, in order, up to the first key already
        cached (that block and the rest stay private). Returns how many were registered."""
        refs = self.refs
        fresh = dict.fromkeys(keys, 1)
        if len(fresh) == len(keys) and refs.keys().isdisjoint(fresh):
            refs.update(fresh)
            return len(keys)
        n = 0
        for k in keys:
            if k in refs:
                break
            refs[k] = 1
            n += 1
        return n

    def release(self, keys: list[int], private: int) -> None:
        """Drop a request's blocks: its cached ones (reverse order) and ``private`` others."""
        if keys:
            refs = self.refs
            rev = keys[::-1]
            left = [refs[k] - 1 for k in rev]
            refs.update(zip(rev, left, strict=True))
            self.lru.update(dict.fromkeys([k for k, r in zip(rev, left, strict=True) if r == 0]))
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
