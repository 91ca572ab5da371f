"""Least KV: the instance with the lowest KV-cache utilisation.

The memory-pressure signal behind the Inference Extension's ``kv-cache-utilization-scorer``
used alone: it steers new prompts away from instances about to preempt. Ties break at random
from the router's seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._util import UniformStream, healthy, pick_min


class LeastKV:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        self._rng = UniformStream(seed)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        return pick_min(cands, [v.kv_utilization for v in cands], self._rng).index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
