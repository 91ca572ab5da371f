"""Small helpers shared by routing policies: health fallback, arg-min/max with seeded random
tie-breaking, a seeded uniform stream and deterministic (unsalted) hashes. Nothing here has
state beyond its own object."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from fleetsched.core.views import InstanceView

_MASK64 = (1 << 64) - 1


def healthy(views: Sequence[InstanceView]) -> Sequence[InstanceView]:
    """The healthy views, or all of them if none is healthy (a router must answer)."""
    out = [v for v in views if v.healthy]
    return out if out else views


def pick_min(views: Sequence[InstanceView], keys: Sequence, rng: UniformStream) -> InstanceView:
    """The view with the smallest key (any comparable: numbers, tuples); ties at random from
    ``rng`` (the real routers' rule: a lowest-index tie-break herds bursts onto one
    instance)."""
    lo = min(keys)
    if keys.count(lo) == 1:
        return views[keys.index(lo)]
    ties = [v for v, k in zip(views, keys, strict=True) if k == lo]
    return ties[rng.index(len(ties))]


def pick_max(views: Sequence[InstanceView], keys: Sequence, rng: UniformStream) -> InstanceView:
    """The view with the largest key; ties at random from ``rng``."""
    hi = max(keys)
    if keys.count(hi) == 1:
        return views[keys.index(hi)]
    ties = [v for v, k in zip(views, keys, strict=True) if k == hi]
    return ties[rng.index(len(ties))]


def least_outstanding(views: Sequence[InstanceView], rng: UniformStream) -> InstanceView:
    """Fewest outstanding (queued + running) requests; ties at random from ``rng``."""
    return pick_min(views, [v.queue_len + v.running for v in views], rng)


_MASKS: dict[tuple[int, ...], int] = {}


def index_mask(idx: Sequence[int]) -> int:
    """The bitmask with bit ``i`` set for each instance index in ``idx`` (memoised: a fleet
    routes over the same few candidate sets again and again)."""
    key = tuple(idx)
    m = _MASKS.get(key)
    if m is None:
        if len(_MASKS) >= 256:
            _MASKS.clear()
        m = 0
        for i in key:
            m |= 1 << i
        _MASKS[key] = m
    return m


def by_index(views: Sequence[InstanceView], index: int) -> InstanceView | None:
    """The view whose ``index`` is ``index`` (views are usually in index order: O(1))."""
    if 0 <= index < len(views) and views[index].index == index:
        return views[index]
    for v in views:
        if v.index == index:
            return v
    return None


class UniformStream:
    """Uniform floats in [0, 1) from ``numpy.random.default_rng(seed)``, drawn in batches.

    One call to numpy costs microseconds; a router needs one or two numbers per decision, so
    they are drawn 1024 at a time. The sequence depends only on the seed."""

    __slots__ = ("_batch", "_buf", "_rng")

    def __init__(self, seed: int = 0, batch: int = 1024) -> None:
        self._rng = np.random.default_rng(seed)
        self._batch = batch
        self._buf: list[float] = []

    def random(self) -> float:
        buf = self._buf
        if not buf:
            buf.extend(reversed(self._rng.random(self._batch).tolist()))
        return buf.pop()

    def index(self, n: int) -> int:
        """Uniform integer in [0, n)."""
        return min(int(self.random() * n), n - 1)

    def two(self, n: int) -> tuple[int, int]:
        """Two distinct uniform integers in [0, n) (n >= 2)."""
        i = self.index(n)
        j = min(int(self.random() * (n - 1)), n - 2)
        if j >= i:
            j += 1
        return i, j


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a well-spread 64-bit integer from any int (deterministic)."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def str_hash64(s: str) -> int:
    """A 64-bit hash of a string that is the same in every process (unlike ``hash(str)``)."""
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
