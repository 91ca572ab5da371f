"""Least KV: the instance with the lowest KV-cache utilisation.

The memory-pressure signal behind the Inference Extension's ``kv-cache-utilization-scorer``
used alone: it steers new prompts away from instances about to preempt. Ties go to the
lowest index.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._util import healthy


class LeastKV:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        pass

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        best = cands[0]
        bk = best.kv_utilization
        for v in cands:
            k = v.kv_utilization
            if k < bk or (k == bk and v.index < best.index):
                best, bk = v, k
        return best.index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
