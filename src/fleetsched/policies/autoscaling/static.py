"""Static: a fixed fleet (the initial replica count, or ``replicas``); the baseline."""

from __future__ import annotations

from fleetsched.policies.autoscaling.base import FleetView


class Static:
    def __init__(self, replicas: int | None = None, interval_s: float = 10.0, seed: int = 0):
        self.replicas = replicas
        self.interval_s = interval_s

    def desired(self, fleet: FleetView) -> int:
        if self.replicas is None:
            self.replicas = fleet.provisioned
        return self.replicas
