"""Priority order with aging: vLLM v1's ``--scheduling-policy priority`` plus anti-starvation.

vLLM v1 keeps waiting requests in a heap on ``(priority, arrival_time)``. Convention here:
``Request.priority`` is **larger = more important** (vLLM uses the opposite sign). Aging is
the classic remedy for starvation in priority scheduling (e.g. Silberschatz et al.,
*Operating System Concepts*, "aging"): a request's effective priority grows while it waits::

    effective(now) = priority + aging_per_s * (now - arrival_s)

The highest effective priority goes first; ties go to the earlier arrival (FCFS). A request
that waited ``dp / aging_per_s`` seconds longer overtakes one ``dp`` priority levels higher.

Every waiting request ages at the same rate, so the order does not change with time alone:
sorting on ``aging_per_s * arrival_s - priority`` is the same at every ``now``, and one heap
serves it (O(log n) per operation, ``time_invariant``). A preempted request goes back into
the heap with its original key (as in vLLM: it keeps its priority and arrival time).
``rank_key`` exposes that key; the ``lowest_priority`` preemption policy needs it to let a
high-priority arrival displace a running request.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from fleetsched.policies.engine._params import check_rate

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class PriorityQueue:
    time_invariant = True

    def __init__(self, aging_per_s: float = 0.0) -> None:
        self.aging_per_s = check_rate(aging_per_s, "aging_per_s")
        self._heap: list[tuple[float, float, int, Seq]] = []
        self._ctr = 0

    def effective_priority(self, seq: Seq, now: float) -> float:
        r = seq.req
        return r.priority + self.aging_per_s * (now - r.arrival_s)

    def rank_key(self, seq: Seq) -> tuple[float, float]:
        """Sort key of ``seq`` in this queue (smaller goes first), the same at every ``now``.

        Preemption policies use it to preempt only requests that will queue behind the head."""
        r = seq.req
        return (self.aging_per_s * r.arrival_s - r.priority, r.arrival_s)

    def _push(self, seq: Seq, order: int) -> None:
        heapq.heappush(self._heap, (*self.rank_key(seq), order, seq))

    def push(self, seq: Seq) -> None:
        self._ctr += 1
        self._push(seq, self._ctr)

    def push_front(self, seq: Seq) -> None:
        self._ctr += 1
        self._push(seq, -self._ctr)  # first among exact ties

    def peek(self, now: float) -> Seq:
        return self._heap[0][3]

    def pop(self, now: float) -> Seq:
        return heapq.heappop(self._heap)[3]

    def __len__(self) -> int:
        return len(self._heap)
