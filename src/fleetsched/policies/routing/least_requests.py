"""Least requests: the instance with the fewest outstanding (queued + running) requests.

Join-the-shortest-queue / least-connections, as in Envoy's ``LEAST_REQUEST`` load balancer
(full-scan variant) and the Inference Extension's queue scorer. Ties go to the lowest index.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._util import healthy, least_outstanding


class LeastRequests:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        pass

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        return least_outstanding(healthy(instances)).index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
