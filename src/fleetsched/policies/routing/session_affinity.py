"""Session affinity with work stealing, after SAGA.

Guo, Wu and Yiu, "SAGA: Workflow-Atomic Scheduling for AI Agent Inference on GPU Clusters"
(arXiv 2605.00528): an agent's chained LLM calls share a growing context, so all calls of
one session go to one instance (its KV cache stays hot: session-affinity batching), while
work stealing keeps the fleet balanced.

* The first call of a session goes to the least loaded healthy instance (fewest
  outstanding; ties at random from the seeded generator) and pins the session there.
* Later calls follow the pin, unless the pinned instance is unhealthy or gone, or its
  outstanding count exceeds ``steal_bound * max(mean, 1)`` (mean over healthy instances;
  the floor of 1 stops stealing over trivial imbalances): then the session is re-pinned to
  the least loaded instance.
* Requests without a session id go to the least loaded instance.

At most ``max_sessions`` pins are kept (least recently used dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, by_index, healthy, least_outstanding


class SessionAffinity:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0, steal_bound: float = 2.0, max_sessions: int = 1 << 17):
        if steal_bound < 1.0 or max_sessions < 1:
            raise InputError("session_affinity: steal_bound must be >= 1, max_sessions >= 1")
        self.steal_bound = steal_bound
        self.max_sessions = max_sessions
        self._rng = UniformStream(seed)
        self._pins: OrderedDict[str, int] = OrderedDict()
        #: Sessions moved by work stealing so far.
        self.steals = 0

    def pinned(self, session_id: str) -> int | None:
        return self._pins.get(session_id)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        sid = req.session_id
        if sid is None:
            return least_outstanding(cands, self._rng).index
        pins = self._pins
        pin = pins.get(sid)
        if pin is not None:
            v = by_index(instances, pin)
            if v is not None and v.healthy:
                mean = sum(c.queue_len + c.running for c in cands) / len(cands)
                if v.queue_len + v.running <= self.steal_bound * max(mean, 1.0):
                    pins.move_to_end(sid)
                    return pin
                best = least_outstanding(cands, self._rng).index
                if best != pin:
                    self.steals += 1
            else:
                best = least_outstanding(cands, self._rng).index
        else:
            best = least_outstanding(cands, self._rng).index
        pins[sid] = best
        pins.move_to_end(sid)
        if len(pins) > self.max_sessions:
            pins.popitem(last=False)
        return best

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
