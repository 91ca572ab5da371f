"""Round robin: instance i, i+1, ... in turn, skipping unhealthy ones.

The classic load-oblivious baseline (e.g. Kubernetes Services via kube-proxy, and the
``round_robin`` policy of vLLM's and SGLang's routers).
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView


class RoundRobin:
    needs_views = False
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        self._next = 0

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        n = len(instances)
        i = self._next % n
        for k in range(n):
            v = instances[(i + k) % n]
            if v.healthy:
                self._next = i + k + 1
                return v.index
        self._next = i + 1
        return instances[i].index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
