"""User-level weighted fair queuing (UWFQ): per-tenant virtual start and finish tags
(Demers, Keshav & Shenker, SIGCOMM 1989).

Weighted fair queuing (Demers, Keshav & Shenker, "Analysis and Simulation of a Fair Queueing
Algorithm", SIGCOMM'89) applied per user/tenant, with the system virtual time of start-time
fair queuing (Goyal, Vin & Cheng, SIGCOMM'96). A request of tenant u with weight ``w_u`` gets,
when it is queued::

    start  = max(V, last finish of u)
    finish = start + cost / w_u,      cost = prompt tokens + predicted output tokens

and the queued request with the smallest virtual finish goes first (ties FCFS). ``V`` is the
system virtual time: the smallest start tag among queued requests, or, with nothing queued,
the finish tag of the last request served; it never goes back. Tags are fixed when a request
is queued; a preempted request returns with its original tags (it was already charged).
Weights come from ``weights: {tenant: w}`` (default 1; without it, from a ``tenant_weights``
mapping in the scenario context when the simulator supplies one). The output length is
predicted as in ``sjf`` (``predictor``: oracle, mean, tenant, quantile; see ``_history``).

With two tenants continuously backlogged, service (in cost units) splits in the ratio of their
weights. Heaps on finish tags (the order) and on start tags (for ``V``, lazily pruned): O(log n)
per operation. Tags never change with time (``time_invariant``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fleetsched.policies.engine._history import Predictor, make_predictor
from fleetsched.policies.engine._params import check_weights

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class WFQQueue:
    time_invariant = True

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        predictor: str = "oracle",
        q: float = 0.5,
        prior_output_tokens: int = 256,
        window: int = 10_000,
        tenant_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.weights = check_weights(weights if weights is not None else tenant_weights)
        self.predictor: Predictor = make_predictor(
            predictor, q=q, prior_output_tokens=prior_output_tokens, window=window
        )
        self.v = 0.0  # system virtual time
        self._last_finish: dict[str, float] = {}  # tenant -> finish tag of its last request
        # seq -> (start, finish) from its first push until it finishes (Seq hashes by identity)
        self._tags: dict[Seq, tuple[float, float]] = {}
        self._by_finish: list[tuple[float, int, Seq]] = []
        self._by_start: list[tuple[float, int, Seq]] = []  # lazy: may hold popped requests
        self._queued: set[Seq] = set()
        self._ctr = 0

    def cost(self, seq: Seq) -> float:
        r = seq.req
        return r.prompt_tokens + max(self.predictor.predict(r), 1.0)

    def tags(self, seq: Seq) -> tuple[float, float]:
        """(virtual start, virtual finish) of a queued or running request."""
        return self._tags[seq]

    def _virtual_time(self) -> float:
        s = self._by_start
        while s and s[0][2] not in self._queued:
            heapq.heappop(s)
        if s:
            self.v = max(self.v, s[0][0])
        return self.v

    def _insert(self, seq: Seq, order: int) -> None:
        start, finish = self._tags[seq]
        heapq.heappush(self._by_finish, (finish, order, seq))
        heapq.heappush(self._by_start, (start, order, seq))
        self._queued.add(seq)

    def push(self, seq: Seq) -> None:
        t = seq.req.tenant
        start = max(self._virtual_time(), self._last_finish.get(t, 0.0))
        finish = start + self.cost(seq) / self.weights.get(t, 1.0)
        self._last_finish[t] = finish
        self._tags[seq] = (start, finish)
        self._ctr += 1
        self._insert(seq, self._ctr)

    def push_front(self, seq: Seq) -> None:
        if seq not in self._tags:  # never queued here (e.g. its KV arrived from elsewhere)
            self.push(seq)
            return
        self._ctr += 1
        self._insert(seq, -self._ctr)

    def peek(self, now: float) -> Seq:
        return self._by_finish[0][2]

    def pop(self, now: float) -> Seq:
        finish, _, seq = heapq.heappop(self._by_finish)
        self._queued.discard(seq)
        if not self._queued:
            self.v = max(self.v, finish)
        return seq

    def on_finish(self, seq: Seq, now: float) -> None:
        self._tags.pop(seq, None)
        if not math.isnan(now):
            self.predictor.observe(seq.req, seq.generated)

    def __len__(self) -> int:
        return len(self._by_finish)
