"""Reactive: Knative's Pod Autoscaler (KPA) decision, on concurrency or KV utilisation.

Followed: knative/serving ``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``) at commit
00a4a55cd385aab53717b357aed7e1f9459b349e, with KPA's defaults (``config-autoscaler``):

* the metric (total in-flight requests over the ready replicas, or with
  ``metric="kv_utilization"`` the sum of their KV utilisations) is averaged over a
  *stable* window (60 s) and a *panic* window (10 % of it, 6 s);
* ``desired_stable = ceil(stable / target)``, ``desired_panic = ceil(panic / target)``,
  both clamped to ``[floor(ready / max_scale_down_rate), ceil(max_scale_up_rate * ready)]``
  (rates 2 and 1000), with ``ready = max(1, ready replicas)``;
* panic mode starts when ``desired_panic / ready >= panic_threshold`` (200 %) and lasts
  until the metric has stayed under it for a whole stable window; in panic the answer is
  ``max(stable, panic)`` and never decreases;
* ``target`` is ``container_concurrency * target_utilization`` (KPA: 100 x 70 %); for an
  LLM replica a sensible concurrency target is far lower (default 16 here: about where a
  batch stops gaining throughput and starts adding TPOT).

Deliberate differences: the metric is sampled once per decision tick (``interval_s``,
KPA's tick is 2 s and it scrapes every second); no scale-to-zero and no activator (the
runtime keeps ``min_replicas``); no scale-down delay window (the runtime's cooldown plays
that role).
"""

from __future__ import annotations

import math
from collections import deque

from fleetsched.errors import InputError
from fleetsched.policies.autoscaling.base import FleetView


class Reactive:
    def __init__(
        self,
        target: float = 16.0,
        metric: str = "concurrency",
        stable_window_s: float = 60.0,
        panic_window_pct: float = 10.0,
        panic_threshold_pct: float = 200.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        interval_s: float = 2.0,
        seed: int = 0,
    ) -> None:
        if metric not in ("concurrency", "kv_utilization"):
            raise InputError(
                f"reactive: metric must be concurrency or kv_utilization, not {metric!r}"
            )
        if not target > 0:
            raise InputError("reactive: target must be > 0")
        self.target = target
        self.metric = metric
        self.stable_window_s = stable_window_s
        self.panic_window_s = stable_window_s * panic_window_pct / 100
        self.panic_threshold = panic_threshold_pct / 100
        self.max_scale_up_rate = max_scale_up_rate
        self.max_scale_down_rate = max_scale_down_rate
        self.interval_s = interval_s
        self._samples: deque[tuple[float, float]] = deque()
        self._panic_since: float | None = None
        self._max_panic = 0

    def _observe(self, fleet: FleetView) -> float:
        if self.metric == "kv_utilization":
            return sum(v.kv_utilization for v in fleet.ready)
        return float(fleet.outstanding)

    def _mean(self, now: float, window: float) -> float:
        xs = [x for t, x in self._samples if t > now - window]
        return sum(xs) / len(xs) if xs else 0.0

    def desired(self, fleet: FleetView) -> int:
        now = fleet.now
        self._samples.append((now, self._observe(fleet)))
        while self._samples and self._samples[0][0] <= now - self.stable_window_s:
            self._samples.popleft()
        stable = self._mean(now, self.stable_window_s)
        panic = self._mean(now, self.panic_window_s)
        ready = max(1, len(fleet.ready))
        up = math.ceil(self.max_scale_up_rate * ready)
        down = math.floor(ready / self.max_scale_down_rate)
        dspc = math.ceil(stable / self.target)
        dppc = math.ceil(panic / self.target)
        d_stable = int(min(max(dspc, down), up))
        d_panic = int(min(max(dppc, down), up))
        over = dppc / ready >= self.panic_threshold
        if over:
            self._panic_since = now
        elif self._panic_since is not None and self._panic_since + self.stable_window_s < now:
            self._panic_since = None
            self._max_panic = 0
        want = d_stable
        if self._panic_since is not None:
            want = max(want, d_panic)
            self._max_panic = max(self._max_panic, want)
            want = self._max_panic
        return want
