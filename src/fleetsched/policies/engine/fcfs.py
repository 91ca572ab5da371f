"""First come, first served: vLLM's default waiting-queue order."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class FCFSQueue:
    time_invariant = True

    def __init__(self) -> None:
        self._q: deque[Seq] = deque()

    def push(self, seq: Seq) -> None:
        self._q.append(seq)

    def push_front(self, seq: Seq) -> None:
        self._q.appendleft(seq)

    def peek(self, now: float) -> Seq:
        return self._q[0]

    def pop(self, now: float) -> Seq:
        return self._q.popleft()

    def __len__(self) -> int:
        return len(self._q)
