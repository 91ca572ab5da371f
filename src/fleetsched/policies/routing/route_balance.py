"""RouteBalance: model routing and load balancing fused into one choice of instance.

After Da and Kalyvianaki, "RouteBalance: Fused Model Routing and Load Balancing for
Heterogeneous LLM Serving" (arXiv 2606.17949; code AKafakA/route-balance, commit 671db9f,
``route_balance_serve.py::_score_and_pick_instance``). Instead of choosing a model from
quality alone and leaving the instance to a load balancer, it scores every healthy instance
of every model on four signals, each normalised to [0, 1] with higher better by dividing by
the largest value among the candidates (the code's "max-divide" normalisation):

* quality ``q_i``: the model's success probability for the request's task class and
  difficulty (the scenario's quality table, as RouteBalance's learned quality estimator),
  raw (the code's default, ``quality_norm="raw"``) or stretched to [0, 1] across the
  candidates (``"minmax"``, the code's option for when quality's narrow spread lets cost and
  latency dominate);
* cost ``1 - c_i / max c``: ``c_i`` the cost proxy of ``_models.cost`` (prompt + expected
  output, times model size; the code prices tokens per instance type);
* latency ``1 - t_i / max t``: ``t_i`` the predicted end-to-end latency on the instance,
  dead-reckoned from the router's own accounting (``_models.predicted_latency_s``; the code
  asks a per-instance XGBoost predictor fed with scraped engine state);
* balance ``1 - u_i / max u``: ``u_i`` the instance's KV utilisation plus the blocks the
  request would add (prompt + expected output) over its total blocks, from scraped metrics.

``score = w_quality q + w_cost cost + w_latency lat + w_balance bal`` with the code's default
weights 0.3, 0.2, 0.3, 0.2; the highest score wins, ties go to the fewest requests in flight
(router-side), then at random from the seeded generator (the code breaks the last tie by
least recently assigned). Requests without a task class score 0 quality everywhere.

Deliberate differences: requests are routed one at a time as they arrive (the code batches
them and sorts each batch longest-predicted-output first), the SLO admission filter is off
(as in the paper's main table), and latency and quality come from the models above instead
of learned predictors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._models import cost, expected_output, predicted_latency_s
from fleetsched.policies.routing._util import UniformStream, healthy, pick_min
from fleetsched.policies.routing.ledger import Ledger
from fleetsched.workload.tasks import DEFAULT_QUALITY
from fleetsched.workload.tasks import quality as success

_EPS = 1e-8


class RouteBalance:
    needs_views = True
    needs_prefix = False

    def __init__(
        self,
        seed: int = 0,
        w_quality: float = 0.3,
        w_cost: float = 0.2,
        w_latency: float = 0.3,
        w_balance: float = 0.2,
        expected_output_tokens: int = 256,
        quality_norm: str = "raw",
        quality: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        ws = (w_quality, w_cost, w_latency, w_balance)
        if quality_norm not in ("raw", "minmax"):
            raise InputError(
                f"route_balance: quality_norm must be raw or minmax, got {quality_norm!r}"
            )
        self.quality_norm = quality_norm
        if any(w < 0 for w in ws) or sum(ws) <= 0:
            raise InputError("route_balance: weights must be >= 0 and not all 0")
        if expected_output_tokens < 1:
            raise InputError("route_balance: expected_output_tokens must be >= 1")
        self.w_quality, self.w_cost, self.w_latency, self.w_balance = ws
        self.expected_output_tokens = expected_output_tokens
        self.quality = quality if quality is not None else DEFAULT_QUALITY
        self._rng = UniformStream(seed)
        self.ledger = Ledger()

    def scores(self, req: RequestView, cands: Sequence[InstanceView]) -> list[float]:
        """The fused score of each candidate (higher is better)."""
        led = self.ledger
        led.grow(max(v.index for v in cands) + 1)
        out = expected_output(req, self.expected_output_tokens)
        task = req.task_class
        qual = [
            0.0 if task is None else success(self.quality, task, v.model, req.difficulty)
            for v in cands
        ]
        if self.quality_norm == "minmax":
            lo, hi = min(qual), max(qual)
            qual = [(q - lo) / (hi - lo + _EPS) for q in qual]
        costs = [cost(req, v.model, out) for v in cands]
        lats = [
            predicted_latency_s(v, req, led.prefill_tokens[v.index], led.requests[v.index], out)
            for v in cands
        ]
        need = req.prompt_tokens + out
        utils = [
            v.kv_utilization + need / (BLOCK_TOKENS * v.total_blocks) if v.total_blocks else 1.0
            for v in cands
        ]
        mc, ml, mu = max(costs), max(lats), max(utils)
        return [
            self.w_quality * q
            + self.w_cost * (1 - c / (mc + _EPS))
            + self.w_latency * (1 - t / (ml + _EPS))
            + self.w_balance * (1 - u / (mu + _EPS))
            for q, c, t, u in zip(qual, costs, lats, utils, strict=True)
        ]

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        scores = self.scores(req, cands)
        led = self.ledger
        keys = [(-s, led.requests[v.index]) for s, v in zip(scores, cands, strict=True)]
        v = pick_min(cands, keys, self._rng)
        led.dispatch(req, v.index)
        return v.index

    def on_first_token(self, req: RequestView, index: int) -> None:
        self.ledger.first_token(req)

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)
