"""Virtual Token Counter: fair sharing of an engine's token service between tenants
(Sheng et al., OSDI 2024).

Sheng et al., "Fairness in Serving Large Language Models", OSDI'24 (VTC; reference code
github.com/Ying1123/VTC-artifact, ``vtc_req_queue.py``).

Each tenant has a counter of the service it received on this engine,
``(w_in * prompt tokens + w_out * output tokens generated) / weight``, read from
``engine.tenant_service(tenant)`` (bound through ``bind``), so running requests raise their
tenant's counter as they decode. As in VTC, a request's prompt is charged when it is admitted
(the prompt term is the larger of the tokens the engine computed and the tokens admitted
requests had to prefill): several requests admitted at one instant would otherwise all go to
the same tenant, whose counter only grows once their prefill has run. The next request is
the oldest waiting request of the *backlogged* tenant (one with waiting requests) whose
counter is smallest; ties go to the tenant whose head came first.

Counter lift: when a tenant becomes backlogged again (a new request finds none of its
requests waiting), its counter is raised to the smallest counter among the other backlogged
tenants, so an idle tenant cannot bank credit. ``tenant_service`` is cumulative, so the lift
is kept as a per-tenant offset added to it. A preempted request going back to the queue does
not lift (the tenant never left). Defaults ``w_in = 1``, ``w_out = 2`` follow the VTC
artifact; ``weights: {tenant: w}`` gives tenants weighted shares (weighted VTC; default 1;
without it, a ``tenant_weights`` mapping from the scenario context is used when the simulator
supplies one).

``peek`` scans the backlogged tenants: O(#tenants); push/pop are O(1) otherwise. Counters of
decoding tenants grow with time alone (``time_invariant`` is False).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._params import check_weights

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class VTCQueue:
    time_invariant = False

    def __init__(
        self,
        w_in: float = 1.0,
        w_out: float = 2.0,
        weights: Mapping[str, float] | None = None,
        tenant_weights: Mapping[str, float] | None = None,
    ) -> None:
        if w_in < 0 or w_out < 0 or w_in + w_out == 0:
            raise InputError(f"w_in and w_out must be >= 0 and not both 0, got {w_in}, {w_out}")
        self.w_in, self.w_out = float(w_in), float(w_out)
        self.weights = check_weights(weights if weights is not None else tenant_weights)
        self.engine: Instance | None = None
        self._q: dict[str, deque[tuple[int, Seq]]] = {}  # backlogged tenants only
        self._offset: dict[str, float] = {}
        self._admitted_in: dict[str, int] = {}  # prompt tokens to prefill of popped requests
        self._n = 0
        self._ctr = 0

    def bind(self, engine: Instance) -> None:
        self.engine = engine

    def counter(self, tenant: str) -> float:
        """The tenant's virtual token counter (service / weight + lift offset)."""
        p, o = (0, 0) if self.engine is None else self.engine.tenant_service(tenant)
        p = max(p, self._admitted_in.get(tenant, 0))
        served = (self.w_in * p + self.w_out * o) / self.weights.get(tenant, 1.0)
        return served + self._offset.get(tenant, 0.0)

    def push(self, seq: Seq) -> None:
        t = seq.req.tenant
        self._ctr += 1
        q = self._q.get(t)
        if q is None:
            others = [self.counter(u) for u in self._q]
            if others:
                lift = min(others) - self.counter(t)
                if lift > 0:
                    self._offset[t] = self._offset.get(t, 0.0) + lift
            q = self._q[t] = deque()
        q.append((self._ctr, seq))
        self._n += 1

    def push_front(self, seq: Seq) -> None:
        self._ctr += 1
        self._q.setdefault(seq.req.tenant, deque()).appendleft((-self._ctr, seq))
        self._n += 1

    def _best(self) -> str:
        best = ""
        best_key = (math.inf, 0)
        for t, q in self._q.items():
            key = (self.counter(t), q[0][0])
            if key < best_key:
                best, best_key = t, key
        return best

    def peek(self, now: float) -> Seq:
        return self._q[self._best()][0][1]

    def pop(self, now: float) -> Seq:
        t = self._best()
        q = self._q[t]
        seq = q.popleft()[1]
        if not q:
            del self._q[t]
        self._admitted_in[t] = self._admitted_in.get(t, 0) + max(seq.target - seq.computed, 0)
        self._n -= 1
        return seq

    def __len__(self) -> int:
        return self._n
