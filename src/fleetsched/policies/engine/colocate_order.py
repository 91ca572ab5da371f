"""Online first, batch jobs in the gaps, ordered by a tardiness heuristic (xLLM-style).

After xLLM's online/offline co-location (Liu et al., "xLLM Technical Report", 2025): best-
effort offline jobs fill the capacity online traffic leaves idle and yield to it. Online
requests (any SLO class but ``batch_class``) are served first, FCFS. Batch jobs are only at
the head when no online request waits, ordered by a classic single-machine tardiness rule:

- ``edd`` — earliest due date (``Request.deadline_s``; no deadline = last), Jackson's rule,
  which minimises the maximum tardiness;
- ``mdd`` — modified due date, ``max(due, now + p)`` with ``p`` the job's estimated
  processing time (``s_per_token`` x (prompt + output tokens)), Baker & Bertrand's heuristic
  for total tardiness: once jobs are late it favours the short ones.

EDD keeps batch jobs in a heap (O(log n)); MDD's order changes with time, so it scans the
waiting batch jobs (O(n)) and its head can change with time alone.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._batch import is_batch

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class ColocateQueue:
    def __init__(
        self, batch_class: str = "batch", batch_order: str = "edd", s_per_token: float = 1e-4
    ) -> None:
        if batch_order not in ("edd", "mdd"):
            raise InputError(f"batch_order must be 'edd' or 'mdd', not {batch_order!r}")
        self.batch_class = batch_class
        self.mdd = batch_order == "mdd"
        self.s_per_token = s_per_token
        self.time_invariant = not self.mdd
        self._online: deque[Seq] = deque()
        self._batch: list[tuple[float, int, Seq]] = []  # EDD heap / MDD list
        self._ctr = 0
        self._picked: Seq | None = None

    @staticmethod
    def _due(seq: Seq) -> float:
        d = seq.req.deadline_s
        return math.inf if d is None else d

    def push(self, seq: Seq) -> None:
        if not is_batch(seq, self.batch_class):
            self._online.append(seq)
            return
        self._ctr += 1
        heapq.heappush(self._batch, (self._due(seq), self._ctr, seq))

    def push_front(self, seq: Seq) -> None:
        if is_batch(seq, self.batch_class):
            self.push(seq)  # batch jobs keep their due-date order
        else:
            self._online.appendleft(seq)

    def peek(self, now: float) -> Seq:
        if self._online:
            return self._online[0]
        if not self.mdd:
            return self._batch[0][2]
        best = min(self._batch, key=lambda e: (max(e[0], now + self._work(e[2])), e[1]))
        self._picked = best[2]
        return best[2]

    def _work(self, seq: Seq) -> float:
        r = seq.req
        return self.s_per_token * (r.prompt_tokens + r.output_tokens)

    def pop(self, now: float) -> Seq:
        if self._online:
            return self._online.popleft()
        if not self.mdd:
            return heapq.heappop(self._batch)[2]
        seq = self._picked if self._picked is not None else self.peek(now)
        self._batch = [e for e in self._batch if e[2] is not seq]
        heapq.heapify(self._batch)
        self._picked = None
        return seq

    def __len__(self) -> int:
        return len(self._online) + len(self._batch)
