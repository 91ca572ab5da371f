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

How the LRU list is held (the hot path of prefix-cached workloads). A request frees its blocks
together, so the list is kept as a queue of *runs*: each release appends one run, the keys it
made idle, in eviction order, under a fresh stamp. ``rc`` maps each cached key to its
reference count while in use, and to minus the stamp of its run while idle. A key that is
touched again (or evicted, or taken over) leaves a stale entry behind in its run, recognised
because its ``rc`` no longer holds that run's stamp; eviction skips stale entries, and the
queue is compacted when they outnumber the live ones. Every operation is a C-level loop over a
request's keys, with no per-block linked-list node: the order of evictions is exactly that of
one ordered list of idle blocks (``lru`` gives it, for tests).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import compress, islice, repeat, takewhile
from operator import eq, not_

_minus_one = (1).__rsub__  # x -> x - 1
_plus_one = (1).__add__  # x -> x + 1
IDLE = (1).__gt__  # an rc value -> whether its block is idle (1 > -stamp)


class KVCache:
    __slots__ = (
        "_head",
        "_runs",
        "_slack",
        "_slots",
        "_stamp",
        "empty",
        "idle",
        "num_blocks",
        "rc",
    )

    def __init__(self, num_blocks: int, compact_slack: int = 4096) -> None:
        """``compact_slack``: stale LRU entries tolerated beyond twice the live ones before
        the queue is compacted (memory against work; no effect on what the cache does)."""
        if num_blocks < 1:
            raise ValueError("num_blocks must be >= 1")
        self.num_blocks = num_blocks
        self.empty = num_blocks  # free blocks holding nothing reusable
        #: cached block key -> reference count (>= 1) in use, or -stamp (<= -1) when idle.
        self.rc: dict[int, int] = {}
        self.idle = 0  # cached keys with no reference (free, reusable until evicted)
        self._runs: deque[tuple[int, list[int]]] = deque()  # (stamp, keys), oldest first
        self._head = 0  # entries of the oldest run already consumed by eviction
        self._slots = 0  # entries in the runs past _head, live and stale
        self._stamp = 0
        self._slack = compact_slack

    @property
    def free(self) -> int:
        return self.empty + self.idle

    @property
    def used(self) -> int:
        return self.num_blocks - self.empty - self.idle

    @property
    def refs(self) -> dict[int, int]:
        """Cached key -> reference count (0 when idle): a copy, for tests and inspection."""
        return {k: r if r > 0 else 0 for k, r in self.rc.items()}

    def lru_order(self) -> Iterator[int]:
        """The idle cached keys, least recently used first (lazily)."""
        rc, head = self.rc, self._head
        for stamp, keys in self._runs:
            part = keys[head:] if head else keys
            head = 0
            yield from compress(part, map(eq, repeat(-stamp), map(rc.get, part)))

    @property
    def lru(self) -> list[int]:
        return list(self.lru_order())

    def allocate(self, n: int) -> None:
        """Take ``n`` free blocks (caller checked ``n <= free``), evicting LRU cached ones."""
        take = n if n <= self.empty else self.empty
        self.empty -= take
        n -= take
        if not n:
            return
        rc, runs, head = self.rc, self._runs, self._head
        pop = rc.pop
        self.idle -= n
        while n:
            stamp, keys = runs[0]
            window = keys[head : head + n]
            head += len(window)
            self._slots -= len(window)
            # One lookup per entry: pop them all, then put back what stale entries popped (a
            # key in use again, or idle in a later run); stale entries are rare.
            values = list(map(pop, window, repeat(None)))
            mark = -stamp
            live = values.count(mark)
            if live < len(window):
                for k, v in zip(window, values, strict=True):
                    if v is not None and v != mark:
                        rc[k] = v
            n -= live
            if head == len(keys):
                runs.popleft()
                head = 0
        self._head = head

    def match(self, keys: list[int], max_blocks: int) -> int:
        """Number of leading ``keys`` present in the cache (at most ``max_blocks``)."""
        return len(list(takewhile(self.rc.__contains__, islice(keys, max(max_blocks, 0)))))

    def touch(self, keys: list[int]) -> None:
        """Take a reference on cached blocks (idle ones leave the LRU list)."""
        rc = self.rc
        if len(set(keys)) == len(keys):  # distinct, as a prefix chain is: C-level loops
            counts = list(map(rc.__getitem__, keys))
            woken = len(list(filter(IDLE, counts)))
            if woken:
                counts = [r if r > 0 else 0 for r in counts]
                self.idle -= woken
            rc.update(zip(keys, map(_plus_one, counts), strict=True))
            return
        for k in keys:  # a key repeated in one request takes one reference per occurrence
            r = rc[k]
            if r < 1:
                self.idle -= 1
                r = 0
            rc[k] = r + 1

    def try_insert(self, key: int) -> bool:
        """Register a block the caller just allocated as cached under ``key``.

        Returns False (the block stays private) when an identical block is already in use;
        an idle identical block is taken over (:meth:`take_over`).
        """
        r = self.rc.get(key)
        if r is None:
            self.rc[key] = 1
        elif r < 1:
            self.take_over(key)
        else:
            return False
        return True

    def insert_run(self, keys: list[int]) -> list[int]:
        """Register freshly allocated blocks as cached, in order; return the keys registered.

        Every key is tried, also after one that is cached already (vLLM caches each full block
        a request computes). A key whose cached copy is in use stays private (not returned); a
        key whose cached copy is idle takes it over: the idle copy leaves the LRU list and the
        caller's block is freed as empty in its place (returned, with a reference).
        """
        rc = self.rc
        if rc.keys().isdisjoint(keys):  # none cached yet: the common case, C-level loops
            n0 = len(rc)
            rc.update(zip(keys, repeat(1)))
            # A key repeated in ``keys`` is cached once (its later copies stay private).
            return keys if len(rc) - n0 == len(keys) else list(dict.fromkeys(keys))
        return [k for k in keys if self.try_insert(k)]

    def take_over(self, key: int) -> None:
        """An idle cached ``key`` becomes the caller's freshly allocated block (one reference);
        the block the caller allocated for it is freed as empty."""
        self.rc[key] = 1
        self.idle -= 1
        self.empty += 1

    def take(self, keys: list[int]) -> None:
        """Turn idle cached blocks into the caller's private blocks (their keys are forgotten).

        For blocks only their owner can ever hit (a request's own blocks after a preemption)."""
        rc = self.rc
        for k in keys:
            if rc.pop(k) > 0:
                raise AssertionError(f"take: block {k} is in use")
        self.idle -= len(keys)

    def release(self, keys: list[int], private: int) -> None:
        """Drop a request's blocks: its cached ones (reverse order) and ``private`` others."""
        if keys:
            rc = self.rc
            rev = keys[::-1]
            left = list(map(_minus_one, map(rc.__getitem__, rev)))
            idle = list(compress(rev, map(not_, left)))
            if idle:
                self._stamp = stamp = self._stamp + 1
                self._runs.append((stamp, idle))
                self.idle += len(idle)
                self._slots += len(idle)
                rc.update(zip(rev, [r or -stamp for r in left], strict=True))
                if self._slots > 2 * self.idle + self._slack:
                    self._compact()
            else:
                rc.update(zip(rev, left, strict=True))
        self.empty += private

    def _compact(self) -> None:
        """Drop the stale entries: the live ones become one run, in the same order."""
        live = self.lru
        self._stamp = stamp = self._stamp + 1
        self.rc.update(zip(live, repeat(-stamp)))
        self._runs = deque([(stamp, live)] if live else ())
        self._head = 0
        self._slots = len(live)

    def check(self, referenced: dict[int, int], private_total: int) -> None:
        """Assert the pool agrees with what requests say they hold (for tests)."""
        in_use = {k: r for k, r in self.rc.items() if r > 0}
        assert in_use == referenced, "cached-block reference counts disagree with holders"
        order = self.lru
        idle = {k for k, r in self.rc.items() if r < 1}
        assert len(order) == len(idle) == self.idle, "LRU list and idle count disagree"
        assert set(order) == idle, "LRU list and idle keys disagree"
        assert self._slots == sum(len(k) for _, k in self._runs) - self._head
        assert self.used == len(in_use) + private_total, (
            f"used {self.used} != cached {len(in_use)} + private {private_total}"
        )
        assert 0 <= self.used <= self.num_blocks
