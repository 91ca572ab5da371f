"""Pinned KV blocks of finished workflow calls, shared by the retention policies.

A pin holds one reference on each of a finished call's cached blocks (its prompt's, and its
output's when the engine caches them): while pinned they are never evicted by the LRU and
count as used. A pin ends when it expires, when a later call of the same workflow that
extends those blocks is admitted on this engine (it took its own references), or when the
engine needs the memory and the policy gives the pin up (least valuable first).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


@dataclass(slots=True, order=True)
class Pin:
    value: float  # lower: given up first under memory pressure
    order: int
    expiry_s: float = field(compare=False)
    workflow: int = field(compare=False)
    keys: list[int] = field(compare=False)
    live: bool = field(default=True, compare=False)


class Pins:
    """The pins of one engine, by value (for giving up) and by expiry (for expiring)."""

    __slots__ = ("_by_expiry", "_by_value", "_by_workflow", "_ctr", "blocks", "engine", "pinned")

    def __init__(self) -> None:
        self.engine: Instance | None = None
        self._by_value: list[Pin] = []
        self._by_expiry: list[tuple[float, int, Pin]] = []
        self._by_workflow: dict[int, list[Pin]] = {}
        self._ctr = 0
        #: Blocks pinned now, and pins taken so far.
        self.blocks = 0
        self.pinned = 0

    def bind(self, engine: Instance) -> None:
        self.engine = engine

    def add(self, seq: Seq, value: float, expiry_s: float) -> None:
        """Pin ``seq``'s cached blocks (leading run of its keys still in the cache)."""
        eng = self.engine
        assert eng is not None and seq.req.call is not None
        keys = seq.prefix_keys(eng.bt)
        n = eng.kv.match(keys, len(keys))
        if n == 0:
            return
        keys = keys[:n]
        eng.kv.touch(keys)
        self._ctr += 1
        pin = Pin(value, self._ctr, expiry_s, seq.req.call.workflow, keys)
        heapq.heappush(self._by_value, pin)
        heapq.heappush(self._by_expiry, (expiry_s, self._ctr, pin))
        self._by_workflow.setdefault(pin.workflow, []).append(pin)
        self.blocks += n
        self.pinned += 1

    def _drop(self, pin: Pin) -> int:
        if not pin.live:
            return 0
        pin.live = False
        assert self.engine is not None
        self.engine.kv.release(pin.keys, 0)
        self.blocks -= len(pin.keys)
        pins = self._by_workflow.get(pin.workflow)
        if pins is not None:
            pins.remove(pin)
            if not pins:
                del self._by_workflow[pin.workflow]
        return len(pin.keys)

    def admitted(self, seq: Seq) -> None:
        """``seq`` was admitted: drop its workflow's pins whose blocks it extends."""
        info = seq.req.call
        if info is None or info.workflow not in self._by_workflow:
            return
        assert self.engine is not None
        keys = seq.prefix_keys(self.engine.bt)
        for pin in list(self._by_workflow[info.workflow]):
            n = len(pin.keys)
            if n <= len(keys) and keys[n - 1] == pin.keys[-1]:  # chained: equal prefix
                self._drop(pin)

    def release(self, blocks: int) -> int:
        """Give up pins, least valuable first, until ``blocks`` are unpinned (or none left)."""
        out = 0
        heap = self._by_value
        while out < blocks and heap:
            out += self._drop(heapq.heappop(heap))
        return out

    def expire(self, now: float) -> None:
        heap = self._by_expiry
        while heap and heap[0][0] <= now:
            self._drop(heapq.heappop(heap)[2])
        if len(self._by_value) > 2 * len(heap) + 64:  # drop given-up pins from the heaps
            self._by_value = [p for p in self._by_value if p.live]
            heapq.heapify(self._by_value)
            self._by_expiry = [e for e in heap if e[2].live]
            heapq.heapify(self._by_expiry)

    def next_expiry(self) -> float:
        heap = self._by_expiry
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def held(self) -> list[int]:
        return [k for pins in self._by_workflow.values() for p in pins for k in p.keys]


class PinnedRetention:
    """What every retention policy does with its :class:`Pins` (the policies differ only in
    what they pin in ``on_finish``, for how long and at what value)."""

    pins: Pins

    def on_admit(self, seq: Seq, now: float) -> None:
        self.pins.admitted(seq)

    def release(self, blocks: int, now: float) -> int:
        return self.pins.release(blocks)

    def expire(self, now: float) -> None:
        self.pins.expire(now)

    def next_expiry(self) -> float:
        return self.pins.next_expiry()

    def held(self) -> list[int]:
        return self.pins.held()
