"""Q-learning: a small tabular agent trained in the simulator (numpy only).

In the spirit of reinforcement-learning autoscalers for serverless platforms (e.g. Schuler,
Jamil & Kühl, "AI-based Resource Allocation: Reinforcement Learning for Adaptive
Auto-scaling in Serverless Environments", CCGrid 2021: tabular Q-learning over a
discretised load, the action a change of the scaling target).

* **State**: in-flight requests per ready replica, bucketed at ``load_edges``; the trend of
  the arrival rate since the last tick (down / flat / up, ``trend_band`` relative); whether
  a replica is starting; the fleet size as a fraction of ``max_replicas``, bucketed at
  ``size_edges``. 8 x 3 x 2 x 4 = 192 states by default.
* **Actions**: change the replica count by one of ``actions`` (-1, 0, +1, +2).
* **Reward** of the previous action, at each tick: ``-cost_weight * provisioned /
  max_replicas - slo_weight * (1 - met / finished)`` over the requests that finished in the
  tick (the SLO misses a gateway observes), so GPU time and SLO misses trade off.
* **Learning** (``learning=True``): one-step Q-learning, ``Q[s, a] += alpha * (r + gamma *
  max Q[s'] - Q[s, a])``, epsilon-greedy exploration. Evaluation runs greedy on a frozen
  table (``table``: the nested list :meth:`table` returns, or a JSON file of it); a state
  never visited in training (its row all zeros) holds the fleet (action 0). Ties between
  equal Q values break at random from the seeded generator.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fleetsched.errors import InputError
from fleetsched.policies.autoscaling.base import FleetView


class QLearning:
    def __init__(
        self,
        table: str | list[list[float]] | None = None,
        learning: bool = False,
        alpha: float = 0.2,
        gamma: float = 0.9,
        epsilon: float = 0.1,
        cost_weight: float = 1.0,
        slo_weight: float = 10.0,
        load_edges: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64),
        size_edges: tuple[float, ...] = (0.25, 0.5, 0.75),
        trend_band: float = 0.15,
        actions: tuple[int, ...] = (-1, 0, 1, 2),
        interval_s: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.load_edges = np.asarray(load_edges, dtype=float)
        self.size_edges = np.asarray(size_edges, dtype=float)
        self.trend_band = trend_band
        self.actions = tuple(int(a) for a in actions)
        self.n_states = (len(self.load_edges) + 1) * 3 * 2 * (len(self.size_edges) + 1)
        self.learning = learning
        self.alpha, self.gamma, self.epsilon = alpha, gamma, epsilon
        self.cost_weight, self.slo_weight = cost_weight, slo_weight
        self.interval_s = interval_s
        self.rng = np.random.default_rng(seed)
        self.q = np.zeros((self.n_states, len(self.actions)))
        if table is not None:
            data: Any = table
            if isinstance(table, str):
                try:
                    data = json.loads(Path(table).read_text())
                except (OSError, ValueError) as e:
                    raise InputError(f"qlearning: cannot read the table: {e}", table) from None
            q = np.asarray(data, dtype=float)
            if q.shape != self.q.shape:
                raise InputError(f"qlearning: table shape {q.shape}, expected {self.q.shape}")
            self.q = q
        self._prev: tuple[int, int] | None = None
        self._prev_rate: float | None = None

    def state(self, fleet: FleetView) -> int:
        load = fleet.outstanding / max(1, len(fleet.ready))
        b = int(np.searchsorted(self.load_edges, load, side="right"))
        rate = fleet.arrivals / fleet.interval_s
        prev = self._prev_rate
        self._prev_rate = rate
        trend = 1
        if prev is not None and prev > 0:
            if rate > prev * (1 + self.trend_band):
                trend = 2
            elif rate < prev * (1 - self.trend_band):
                trend = 0
        size = int(
            np.searchsorted(self.size_edges, fleet.provisioned / fleet.max_replicas, side="right")
        )
        return ((b * 3 + trend) * 2 + (fleet.starting > 0)) * (len(self.size_edges) + 1) + size

    def reward(self, fleet: FleetView) -> float:
        miss = 1 - fleet.finished_met_slo / fleet.finished if fleet.finished else 0.0
        return -self.cost_weight * fleet.provisioned / fleet.max_replicas - self.slo_weight * miss

    def _best(self, s: int) -> int:
        row = self.q[s]
        if not self.learning and not row.any():
            return self.actions.index(0) if 0 in self.actions else 0  # unseen: hold
        top = np.flatnonzero(row == row.max())
        return int(top[0] if top.size == 1 else self.rng.choice(top))

    def desired(self, fleet: FleetView) -> int:
        s = self.state(fleet)
        if self.learning and self._prev is not None:
            ps, pa = self._prev
            target = self.reward(fleet) + self.gamma * self.q[s].max()
            self.q[ps, pa] += self.alpha * (target - self.q[ps, pa])
        if self.learning and self.rng.random() < self.epsilon:
            a = int(self.rng.integers(len(self.actions)))
        else:
            a = self._best(s)
        self._prev = (s, a)
        return max(1, fleet.provisioned + self.actions[a])

    def end_episode(self) -> None:
        """Forget the last transition (the next episode starts from a new state)."""
        self._prev = None
        self._prev_rate = None

    def table(self) -> list[list[float]]:
        return [[float(x) if math.isfinite(x) else 0.0 for x in row] for row in self.q]
