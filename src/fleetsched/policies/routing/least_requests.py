"""Least requests: the instance with the fewest outstanding (queued + running) requests.

Join-the-shortest-queue / least-connections, as in Envoy's ``LEAST_REQUEST`` load balancer
(full-scan variant). Ties break at random from the router's seeded generator (Envoy picks at
random among equals too; a lowest-index rule herds every burst onto one instance).
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._util import UniformStream, healthy, least_outstanding


class LeastRequests:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        self._rng = UniformStream(seed)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        return least_outstanding(healthy(instances), self._rng).index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
