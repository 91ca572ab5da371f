"""Power of two choices: sample two distinct instances at random, send to the less loaded
(Mitzenmacher, IEEE TPDS 2001).

Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (IEEE TPDS 2001):
two random probes bring the maximum load from O(log n / log log n) down to
O(log log n). Load = outstanding (queued + running) requests; the more loaded of the two is
never chosen, and a tie between the two breaks at random from the seeded generator. Used by
SGLang's router (``power_of_two``) and Envoy's default ``LEAST_REQUEST`` balancer.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._util import UniformStream, healthy


class PowerOfTwo:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        self._rng = UniformStream(seed)
        #: The two candidates of the last decision (for tests and traces).
        self.last_pair: tuple[int, int] | None = None

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        if len(cands) == 1:
            return cands[0].index
        i, j = self._rng.two(len(cands))
        a, b = cands[i], cands[j]
        self.last_pair = (a.index, b.index)
        la = a.queue_len + a.running
        lb = b.queue_len + b.running
        if la < lb or (la == lb and self._rng.random() < 0.5):
            return a.index
        return b.index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
