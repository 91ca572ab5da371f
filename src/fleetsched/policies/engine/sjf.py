"""Shortest job first on predicted output length, with a pluggable length predictor
(S³, NeurIPS 2023; Fu et al., NeurIPS 2024).

Output-length-aware ordering for LLM serving: S³ (Jin et al., "S³: Increasing GPU
Utilization during Generative Inference for Higher Throughput", NeurIPS'23) and learning-to-
rank SJF (Fu et al., "Efficient LLM Scheduling by Learning to Rank", NeurIPS'24) order by a
predicted output length; with ``predictor: oracle`` this is the clairvoyant SJF bound.

Job size = predicted total output tokens + ``prompt_weight`` * prompt tokens - tokens already
generated (a preempted request only has the rest left). Predictors (see ``_history``):
``oracle`` (the true ``output_tokens``), ``mean`` (running mean of finished outputs),
``tenant`` (running mean of the tenant's finished outputs), ``quantile`` (``q``-quantile of the
last ``window`` finished outputs). ``mean`` and ``quantile`` give every request the same
prediction, so they order by ``prompt_weight * prompt`` and then FCFS; they are useful as
baselines and with ``prompt_weight > 0``.

Requests with the same prediction group (all of them for ``mean``/``quantile``, a tenant for
``tenant``, one group for ``oracle``) sit in one heap keyed by their own part of the size, so
predictions can change as requests finish without re-keying anything; ``peek`` compares the
heads of the groups: O(log n + #groups). Predictions change only when a request finishes,
never with time alone (``time_invariant``). Ties go FCFS; a preempted request is first among
exact ties.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._history import Predictor, make_predictor

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class SJFQueue:
    time_invariant = True

    def __init__(
        self,
        predictor: str = "oracle",
        q: float = 0.5,
        prior_output_tokens: int = 256,
        window: int = 10_000,
        prompt_weight: float = 0.0,
    ) -> None:
        if prompt_weight < 0:
            raise InputError(f"prompt_weight must be >= 0, got {prompt_weight}")
        self.predictor: Predictor = make_predictor(
            predictor, q=q, prior_output_tokens=prior_output_tokens, window=window
        )
        self.prompt_weight = float(prompt_weight)
        self._heaps: dict[Hashable, list[tuple[float, int, Seq]]] = {}
        self._n = 0
        self._ctr = 0

    def job_size(self, seq: Seq) -> float:
        """Predicted tokens left: output still to generate (+ weighted prompt)."""
        return self.predictor.predict(seq.req) + self._own(seq)

    def _own(self, seq: Seq) -> float:
        r = seq.req
        return self.prompt_weight * r.prompt_tokens - seq.generated

    def _push(self, seq: Seq, order: int) -> None:
        p = self.predictor
        g = p.group(seq.req)
        key = p.own(seq.req) + self._own(seq)
        heapq.heappush(self._heaps.setdefault(g, []), (key, order, seq))
        self._n += 1

    def push(self, seq: Seq) -> None:
        self._ctr += 1
        self._push(seq, self._ctr)

    def push_front(self, seq: Seq) -> None:
        self._ctr += 1
        self._push(seq, -self._ctr)

    def _best(self) -> Hashable:
        p = self.predictor
        best: Hashable = None
        best_key = (math.inf, 0)
        for g, h in self._heaps.items():
            key = (p.predict_group(g) + h[0][0], h[0][1])
            if key < best_key:
                best, best_key = g, key
        return best

    def peek(self, now: float) -> Seq:
        return self._heaps[self._best()][0][2]

    def pop(self, now: float) -> Seq:
        g = self._best()
        h = self._heaps[g]
        seq = heapq.heappop(h)[2]
        if not h:
            del self._heaps[g]
        self._n -= 1
        return seq

    def on_finish(self, seq: Seq, now: float) -> None:
        if not math.isnan(now):
            self.predictor.observe(seq.req, seq.generated)

    def __len__(self) -> int:
        return self._n
