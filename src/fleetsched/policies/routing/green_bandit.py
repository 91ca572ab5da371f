"""GreenServ: a contextual bandit (LinUCB) that learns which model to send each query to,
trading accuracy against energy.

After Ziller et al., "GreenServ: Energy-Efficient Context-Aware Dynamic Routing for
Multi-Model LLM Inference" (ICPE 2026, arXiv 2601.17551; code TZData1/llm-inference-router,
commit 8e055dd: ``src/bandit/linucb.py``, ``experiments/shared/analysis_utils.py``,
``experiments/config/experiments.yaml``). Each model is an arm. A query's context vector
one-hot encodes its task class (the classes of the quality table, plus "other") and its
complexity bin (GreenServ bins Flesch reading ease in three; here the request's difficulty
in thirds, plus "unknown"), with a constant 1. LinUCB keeps per arm ``A = reg * I + sum x
x^T`` and ``b = sum r x`` and picks the arm with the largest ``theta.x + alpha *
sqrt(x^T A^-1 x)``, ``theta = A^-1 b`` (ties at random). Models whose predicted latency on an
idle instance exceeds ``max_latency_s`` are filtered out first (GreenServ's feasibility
filter, 5 s). The reward, learned online from the ``on_outcome`` feedback, is GreenServ's
``(1 - lambda) * accuracy + lambda * (1 - energy_norm)``, accuracy the judge's 0/1 and
energy the request's joules per output token, min-max normalised; defaults ``lambda = 0.5``,
``alpha = 0.1``, ``reg = 0.05`` (the paper's experiments).

Deliberate differences: energy is normalised by the running minimum and maximum seen so far
(GreenServ uses bounds profiled offline per dataset); no semantic-cluster feature (there is
no query text); within the chosen model, the instance is the one with the fewest requests the
router sent and has not seen finish, ties at random (GreenServ serves one instance per
model). Router-side state only: the gateway runs it, but without outcome feedback it keeps
its prior (every arm equal).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from fleetsched.core.views import InstanceView, Outcome, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._models import by_model, expected_output, predicted_latency_s
from fleetsched.policies.routing._util import UniformStream, healthy, pick_min
from fleetsched.policies.routing.ledger import Ledger
from fleetsched.workload.tasks import DEFAULT_QUALITY

_MAX_PENDING = 1 << 17


class GreenBandit:
    needs_views = True
    needs_prefix = False

    def __init__(
        self,
        seed: int = 0,
        alpha: float = 0.1,
        reg: float = 0.05,
        energy_weight: float = 0.5,
        max_latency_s: float = 5.0,
        expected_output_tokens: int = 256,
        quality: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        if alpha < 0 or reg <= 0 or not 0 <= energy_weight <= 1 or max_latency_s <= 0:
            raise InputError(
                "green_bandit: alpha must be >= 0, reg > 0, energy_weight in [0, 1], "
                "max_latency_s > 0"
            )
        self.alpha, self.reg, self.energy_weight = alpha, reg, energy_weight
        self.max_latency_s = max_latency_s
        self.expected_output_tokens = expected_output_tokens
        tasks = sorted((quality if quality is not None else DEFAULT_QUALITY).keys())
        self._task_slot = {t: i for i, t in enumerate(tasks)}
        self._dim = len(tasks) + 1 + 4 + 1  # tasks + other, 3 bins + unknown, bias
        self._rng = UniformStream(seed)
        self.ledger = Ledger()
        self._arms: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # model -> (A^-1, b)
        # Decisions awaiting feedback, oldest first (bounded: feedback may never come).
        self._pending: OrderedDict[int, tuple[str, np.ndarray]] = OrderedDict()
        self._e_lo, self._e_hi = math.inf, -math.inf
        #: Decisions per model so far.
        self.choices: dict[str, int] = {}

    # ---------------------------------------------------------------- context and arms
    def context(self, req: RequestView) -> np.ndarray:
        x = np.zeros(self._dim)
        n = len(self._task_slot)
        x[self._task_slot.get(req.task_class or "", n)] = 1.0
        d = req.difficulty
        x[n + 1 + (3 if d is None else min(int(d * 3), 2))] = 1.0
        x[-1] = 1.0
        return x

    def _arm(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        arm = self._arms.get(model)
        if arm is None:
            arm = (np.eye(self._dim) / self.reg, np.zeros(self._dim))
            self._arms[model] = arm
        return arm

    def ucb(self, model: str, x: np.ndarray) -> float:
        a_inv, b = self._arm(model)
        ax = a_inv @ x
        return float((a_inv @ b) @ x + self.alpha * math.sqrt(max(float(x @ ax), 0.0)))

    # ---------------------------------------------------------------- routing
    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        groups = by_model(healthy(instances))
        out = expected_output(req, self.expected_output_tokens)
        feasible = {
            m: vs
            for m, vs in groups.items()
            if predicted_latency_s(vs[0], req, 0, 0, out) <= self.max_latency_s
        } or groups
        x = self.context(req)
        models = list(feasible)
        scores = [-self.ucb(m, x) for m in models]
        best = min(scores)
        ties = [m for m, s in zip(models, scores, strict=True) if s == best]
        model = ties[0] if len(ties) == 1 else ties[self._rng.index(len(ties))]
        self.choices[model] = self.choices.get(model, 0) + 1
        cands = feasible[model]
        led = self.ledger
        led.grow(max(v.index for v in cands) + 1)
        v = pick_min(cands, [led.requests[v.index] for v in cands], self._rng)
        led.dispatch(req, v.index)
        self._pending[req.id] = (model, x)
        if len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)
        return v.index

    def on_first_token(self, req: RequestView, index: int) -> None:
        self.ledger.first_token(req)

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)

    def on_outcome(self, req: RequestView, index: int, outcome: Outcome) -> None:
        """Learn from a finished request: reward its arm with accuracy and energy."""
        pending = self._pending.pop(req.id, None)
        if pending is None or math.isnan(outcome.correct):
            return
        model, x = pending
        e = outcome.energy_j / max(outcome.output_tokens, 1)
        self._e_lo, self._e_hi = min(self._e_lo, e), max(self._e_hi, e)
        span = self._e_hi - self._e_lo
        e_norm = (e - self._e_lo) / span if span > 0 else 0.0
        lam = self.energy_weight
        reward = (1 - lam) * outcome.correct + lam * (1 - e_norm)
        a_inv, b = self._arm(model)
        ax = a_inv @ x  # Sherman-Morrison: (A + x x^T)^-1
        a_inv -= np.outer(ax, ax) / (1.0 + float(x @ ax))
        b += reward * x
