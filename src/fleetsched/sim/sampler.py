"""Sample every instance's waiting queue, running batch and KV use at a fixed interval.

Only runs that ask for it pay for it: ``Simulator(..., sampler=Sampler(0.5))`` schedules
one timed call per sample (``Simulator.call_at``) and nothing else changes. A sample reads
each instance's view at that instant (``Instance.view`` brings a fast-forward run up to
date, as a router's view does), so sampling never changes what is simulated. An autoscaled
fleet grows during the run: an instance counts as idle (all zeros) in the samples taken
before it was added.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from fleetsched.engine.instance import Instance
from fleetsched.errors import InputError
from fleetsched.metrics.timeseries import InstanceSeries


class Sampler:
    """Collects samples at ``t0, t0 + interval_s, ...`` (t0 = the first arrival) while the
    simulation has work left."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0:
            raise InputError(f"the sample interval must be > 0 s, got {interval_s}")
        self.interval_s = float(interval_s)
        self._t: list[float] = []
        self._rows: list[list[tuple[int, int, float]]] = []
        self._names: list[str] = []

    def start(self, sim: Any, t0: float) -> None:
        """Called by the simulator when the first request arrives."""
        sim.call_at(t0, partial(self._tick, sim, t0, 0))

    def _tick(self, sim: Any, t0: float, k: int, t: float) -> None:
        self.sample(t, sim.instances)
        if sim.work_left():  # sample k+1 at t0 + (k+1) x interval: no drift
            sim.call_at(t0 + (k + 1) * self.interval_s, partial(self._tick, sim, t0, k + 1))

    def sample(self, t: float, instances: Sequence[Instance]) -> None:
        if len(instances) > len(self._names):
            self._names = [inst.name for inst in instances]
        self._t.append(t)
        views = [inst.view(t) for inst in instances]
        self._rows.append([(v.queue_len, v.running, v.kv_utilization) for v in views])

    def series(self) -> InstanceSeries:
        n, k = len(self._t), len(self._names)
        queue = np.zeros((n, k), dtype=np.int64)
        running = np.zeros((n, k), dtype=np.int64)
        kv = np.zeros((n, k), dtype=np.float64)
        for i, row in enumerate(self._rows):
            for j, (q, r, u) in enumerate(row):
                queue[i, j], running[i, j], kv[i, j] = q, r, u
        return InstanceSeries(
            np.array(self._t, dtype=np.float64), list(self._names), queue, running, kv
        )
