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

EDD keeps batch jobs in a heap on the due date. MDD uses three heaps: jobs that can still
finish on time (key: due date), the times at which they stop being able to (``due - p``), and
late jobs (key: ``p``, since their modified due date is ``now + p``); a job moves once from
the first to the last as time passes. Both are O(log n) per operation; MDD's head can change
with time alone.
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
        if s_per_token < 0:
            raise InputError(f"s_per_token must be >= 0, not {s_per_token!r}")
        self.batch_class = batch_class
        self.mdd = batch_order == "mdd"
        self.s_per_token = s_per_token
        self.time_invariant = not self.mdd
        self._online: deque[Seq] = deque()
        self._due: list[tuple[float, int, Seq]] = []  # (due, order, seq): on-time-able jobs
        self._turns: list[tuple[float, int, Seq]] = []  # (due - p, ..): when a job turns late
        self._late: list[tuple[float, int, Seq]] = []  # (p, order, seq): late jobs (MDD)
        self._where: dict[int, int] = {}  # order -> 0 on time, 1 late
        self._n_batch = 0
        self._ctr = 0

    def _work(self, seq: Seq) -> float:
        r = seq.req
        return self.s_per_token * (r.prompt_tokens + r.output_tokens)

    def push(self, seq: Seq) -> None:
        if not is_batch(seq, self.batch_class):
            self._online.append(seq)
            return
        self._ctr += 1
        due = seq.req.deadline_s
        due = math.inf if due is None else due
        heapq.heappush(self._due, (due, self._ctr, seq))
        self._where[self._ctr] = 0
        if self.mdd:
            heapq.heappush(self._turns, (due - self._work(seq), self._ctr, seq))
        self._n_batch += 1

    def push_front(self, seq: Seq) -> None:
        if is_batch(seq, self.batch_class):
            self.push(seq)  # batch jobs keep their due-date order
        else:
            self._online.appendleft(seq)

    def _batch_head(self, now: float) -> tuple[list, tuple]:
        """The heap holding the next batch job, and its top entry."""
        where = self._where
        if self.mdd:
            turns, late = self._turns, self._late
            while turns and turns[0][0] < now:  # these jobs can no longer be on time
                _, order, seq = heapq.heappop(turns)
                if where.get(order) == 0:
                    where[order] = 1
                    heapq.heappush(late, (self._work(seq), order, seq))
            due = self._due
            while due and where.get(due[0][1]) != 0:  # left for the late heap, or gone
                heapq.heappop(due)
            while late and where.get(late[0][1]) != 1:
                heapq.heappop(late)
            if late and (not due or (now + late[0][0], late[0][1]) < (due[0][0], due[0][1])):
                return late, late[0]
            return due, due[0]
        return self._due, self._due[0]

    def peek(self, now: float) -> Seq:
        if self._online:
            return self._online[0]
        return self._batch_head(now)[1][2]

    def pop(self, now: float) -> Seq:
        if self._online:
            return self._online.popleft()
        heap, (_, order, seq) = self._batch_head(now)
        heapq.heappop(heap)
        del self._where[order]
        self._n_batch -= 1
        return seq

    def __len__(self) -> int:
        return len(self._online) + self._n_batch
