"""Least-slack-first for deadlines and SLO classes, serving what can still meet its SLO first
(after JITServe, NSDI 2026).

After JITServe (Zhang et al., "JITServe: SLO-aware LLM Serving with Imprecise Request
Information", NSDI'26, arXiv:2504.20068): serve each request just in time for its SLO and
spend nothing on requests that can no longer make it while others still can. Earliest
deadline first / least laxity first is the classic real-time rule (Liu & Layland, JACM 1973).

A waiting request's next token is due at its deadline (``deadline_s``, or arrival + its SLO
class's ``ttft_s``; after the first token, paced by ``tpot_s`` per token, see ``_slo``). Its
slack at ``now`` is ``deadline - now - prefill_s_per_token * tokens_to_prefill``. Requests
with slack >= 0 go first, least slack first; requests whose slack is already negative go
behind every feasible one, earliest deadline first among themselves. Ties go FCFS.

``now`` shifts every slack by the same amount, so feasible requests keep their order: they sit
in a heap on ``deadline - prefill time`` (their latest start). When ``now`` passes a request's
latest start it moves, once and for good, to a second heap on its deadline. O(log n)
amortised per operation. The head changes with time alone (``time_invariant`` is False).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetsched.policies.engine._params import check_rate
from fleetsched.policies.engine._slo import Deadlines

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class EDFQueue:
    time_invariant = False

    def __init__(
        self,
        prefill_s_per_token: float = 2e-5,
        slo_classes: Mapping[str, Any] | None = None,
    ) -> None:
        self.prefill_s_per_token = check_rate(prefill_s_per_token, "prefill_s_per_token")
        self.deadlines = Deadlines(slo_classes)
        self._feasible: list[tuple[float, float, int, Seq]] = []  # (latest start, deadline, ..)
        self._late: list[tuple[float, int, Seq]] = []  # (deadline, order, seq)
        self._ctr = 0

    def deadline(self, seq: Seq) -> float:
        return self.deadlines.next_token(seq.req, seq.generated)

    def latest_start(self, seq: Seq) -> float:
        """Time after which the request cannot meet its deadline (slack = this - now)."""
        return self.deadline(seq) - self.prefill_s_per_token * max(seq.target - seq.computed, 0)

    def slack(self, seq: Seq, now: float) -> float:
        return self.latest_start(seq) - now

    def _push(self, seq: Seq, order: int) -> None:
        heapq.heappush(self._feasible, (self.latest_start(seq), self.deadline(seq), order, seq))

    def push(self, seq: Seq) -> None:
        self._ctr += 1
        self._push(seq, self._ctr)

    def push_front(self, seq: Seq) -> None:
        self._ctr += 1
        self._push(seq, -self._ctr)

    def _expire(self, now: float) -> None:
        f = self._feasible
        while f and f[0][0] < now:
            _, d, order, seq = heapq.heappop(f)
            heapq.heappush(self._late, (d, order, seq))

    def peek(self, now: float) -> Seq:
        self._expire(now)
        return self._feasible[0][3] if self._feasible else self._late[0][2]

    def pop(self, now: float) -> Seq:
        self._expire(now)
        if self._feasible:
            return heapq.heappop(self._feasible)[3]
        return heapq.heappop(self._late)[2]

    def __len__(self) -> int:
        return len(self._feasible) + len(self._late)
