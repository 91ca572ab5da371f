"""Predictive: provision for the arrival rate expected when a new replica would be ready.

Each tick the policy updates a Holt (double exponential) smoothing of the arrival rate
(level and trend, smoothing ``alpha`` and ``beta``), forecasts it ``lead_s`` seconds ahead
(the model-load delay: what is decided now serves then), and asks for
``ceil(forecast * mean_output_tokens / (replica_decode_tokens_s * utilization))``
replicas: the perf model's decode capacity of one replica at the observed context, used
at ``utilization`` of it (the rest absorbs prefill work and variance). It also keeps at
least enough replicas to hold the requests already in flight at ``max_concurrency`` each.
"""

from __future__ import annotations

import math

from fleetsched.policies.autoscaling.base import FleetView


class Predictive:
    def __init__(
        self,
        lead_s: float = 30.0,
        utilization: float = 0.5,
        alpha: float = 0.5,
        beta: float = 0.3,
        max_concurrency: float = 64.0,
        interval_s: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.lead_s = lead_s
        self.utilization = utilization
        self.alpha = alpha
        self.beta = beta
        self.max_concurrency = max_concurrency
        self.interval_s = interval_s
        self._level: float | None = None
        self._trend = 0.0

    def forecast(self, rate: float) -> float:
        """Update the smoothing with this tick's rate; the rate expected ``lead_s`` ahead."""
        if self._level is None:
            self._level = rate
        else:
            prev = self._level
            self._level = self.alpha * rate + (1 - self.alpha) * (prev + self._trend)
            self._trend = self.beta * (self._level - prev) + (1 - self.beta) * self._trend
        steps = self.lead_s / self.interval_s
        return max(0.0, self._level + steps * self._trend)

    def desired(self, fleet: FleetView) -> int:
        rate = fleet.arrivals / fleet.interval_s
        f = self.forecast(rate)
        per_replica = (
            fleet.replica_decode_tokens_s * self.utilization / max(fleet.mean_output_tokens, 1.0)
        )
        need = math.ceil(f / per_replica) if per_replica > 0 else fleet.max_replicas
        hold = math.ceil(fleet.outstanding / self.max_concurrency)
        return max(need, hold, 1)
