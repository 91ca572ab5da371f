"""Sample every instance's waiting queue, running batch and KV use at a fixed interval.

Only runs that ask for it pay for it: the kernel schedules one timed action per sample
(``Simulator(..., sampler=Sampler(0.5))``) and nothing else changes. A sample reads each
instance's view at that instant (``Instance.view`` brings a fast-forward run up to date, as
a router's view does), so sampling never changes what is simulated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fleetsched.engine.instance import Instance
from fleetsched.errors import InputError
from fleetsched.metrics.timeseries import InstanceSeries


class Sampler:
    """Collects samples at ``t0, t0 + interval_s, ...`` (t0 = the first arrival)."""

    def __init__(self, interval_s: float) -> None:
        if not interval_s > 0:
            raise InputError(f"the sample interval must be > 0 s, got {interval_s}")
        self.interval_s = float(interval_s)
        self._t: list[float] = []
        self._queue: list[int] = []
        self._running: list[int] = []
        self._kv: list[float] = []
        self._names: list[str] = []

    def sample(self, t: float, instances: Sequence[Instance]) -> None:
        if not self._names:
            self._names = [inst.name for inst in instances]
        self._t.append(t)
        for inst in instances:
            v = inst.view(t)
            self._queue.append(v.queue_len)
            self._running.append(v.running)
            self._kv.append(v.kv_utilization)

    def series(self) -> InstanceSeries:
        n, k = len(self._t), len(self._names)
        return InstanceSeries(
            t_s=np.array(self._t, dtype=np.float64),
            names=list(self._names),
            queue_len=np.array(self._queue, dtype=np.int64).reshape(n, k),
            running=np.array(self._running, dtype=np.int64).reshape(n, k),
            kv_utilization=np.array(self._kv, dtype=np.float64).reshape(n, k),
        )
