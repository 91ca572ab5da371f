"""Small helpers shared by routing policies: health fallback, argmins, a seeded uniform
stream and deterministic (unsalted) hashes. Nothing here has state beyond its own object."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from fleetsched.core.views import InstanceView, RequestView

_MASK64 = (1 << 64) - 1


def healthy(views: Sequence[InstanceView]) -> Sequence[InstanceView]:
    """The healthy views, or all of them if none is healthy (a router must answer)."""
    out = [v for v in views if v.healthy]
    return out if out else views


def least_outstanding(views: Sequence[InstanceView]) -> InstanceView:
    """Fewest outstanding (queued + running) requests; ties go to the lowest index."""
    best = views[0]
    bo = best.queue_len + best.running
    for v in views:
        o = v.queue_len + v.running
        if o < bo or (o == bo and v.index < best.index):
            best, bo = v, o
    return best


def argmin_by(views: Sequence[InstanceView], keys: Sequence[float]) -> InstanceView:
    """The view with the smallest key; ties go to the lowest index."""
    best = views[0]
    bk = keys[0]
    for v, k in zip(views, keys, strict=True):
        if k < bk or (k == bk and v.index < best.index):
            best, bk = v, k
    return best


def argmax_by(views: Sequence[InstanceView], keys: Sequence[float]) -> InstanceView:
    """The view with the largest key; ties go to the lowest index."""
    best = views[0]
    bk = keys[0]
    for v, k in zip(views, keys, strict=True):
        if k > bk or (k == bk and v.index < best.index):
            best, bk = v, k
    return best


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


def prefix_key(req: RequestView, blocks: int = 1) -> int:
    """A 64-bit key for the request's first ``blocks`` prompt blocks.

    The chained hash at block ``blocks - 1`` identifies the whole prefix up to it. Prompts
    shorter than one block have no prefix: they fall back to the session, then the request id
    (so they spread instead of piling on one instance)."""
    hs = req.block_hashes
    if hs:
        return mix64(hs[min(blocks, len(hs)) - 1])
    if req.session_id is not None:
        return str_hash64(req.session_id)
    return mix64(req.id ^ 0x5BD1E995)
