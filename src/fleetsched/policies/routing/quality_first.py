"""Quality first: the best model for the task, then the least loaded of its instances.

The two-layer stack RouteBalance (arXiv 2606.17949) calls *serial*: a model router picks a
model from quality signals alone -- here the model with the highest success probability in
the scenario's quality table for the request's task class and difficulty (ties at random) --
and a load balancer then picks one of that model's healthy instances, the one with the
fewest requests the router sent and has not seen finish (ties at random). The model choice
never looks at load, so when the best model's instances saturate, requests keep queueing
there while smaller models idle.

A request without a task class goes to the least loaded healthy instance of any model.
Router-side accounting only (a gateway can run it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._models import by_model
from fleetsched.policies.routing._util import UniformStream, healthy, pick_min
from fleetsched.policies.routing.ledger import Ledger
from fleetsched.workload.tasks import DEFAULT_QUALITY
from fleetsched.workload.tasks import quality as success


class QualityFirst:
    needs_views = True
    needs_prefix = False

    def __init__(
        self, seed: int = 0, quality: Mapping[str, Mapping[str, float]] | None = None
    ) -> None:
        self.quality = quality if quality is not None else DEFAULT_QUALITY
        self._rng = UniformStream(seed)
        self.ledger = Ledger()

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        if req.task_class is not None:
            groups = by_model(cands)
            qs = [-success(self.quality, req.task_class, m, req.difficulty) for m in groups]
            best = min(qs)
            models = [m for m, q in zip(groups, qs, strict=True) if q == best]
            model = models[0] if len(models) == 1 else models[self._rng.index(len(models))]
            cands = groups[model]
        led = self.ledger
        led.grow(max(v.index for v in cands) + 1)
        v = pick_min(cands, [led.requests[v.index] for v in cands], self._rng)
        led.dispatch(req, v.index)
        return v.index

    def on_first_token(self, req: RequestView, index: int) -> None:
        self.ledger.first_token(req)

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)
