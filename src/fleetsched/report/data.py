"""What a report is drawn from: runs (simulate, compare, bench), sweeps, plans, fidelity pairs.

Every field a view reads is optional in the sense that the view is left out when it is
missing: a run read from a summary alone has no ``requests`` (no CDFs), one without a
sampled time series no heat map. ``docs/report.md`` lists the input files of each kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetsched.metrics.records import RequestRecord
from fleetsched.metrics.summary import record_columns, request_latencies
from fleetsched.metrics.timeseries import InstanceSeries


def request_columns(records: Iterable[RequestRecord]) -> dict[str, np.ndarray]:
    """Numpy columns of the records (``metrics.summary.record_columns``) plus the derived
    per-request latencies (``ttft_s, tpot_s, e2e_s, queue_s, norm_latency_s``; NaN when
    unfinished or undefined)."""
    cols = record_columns(records)
    cols.update(request_latencies(cols))
    return cols


@dataclass(slots=True, eq=False)
class Run:
    """One simulated or live run: its summary, and optionally per-request columns (from
    :func:`request_columns`) and the per-instance time series."""

    label: str
    summary: dict[str, Any]
    requests: dict[str, np.ndarray] | None = None
    series: InstanceSeries | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def scenario(self) -> dict[str, Any] | None:
        """The scenario (``Scenario.model_dump(mode="json")``) the summary carries, if any."""
        sc = self.summary.get("scenario")
        return sc if isinstance(sc, dict) else None


@dataclass(slots=True)
class SweepPoint:
    params: dict[str, Any]
    summary: dict[str, Any] | None  # None when the point failed
    error: str | None = None
    #: The point's fleet at the price table's USD per GPU-hour (None: not written or unpriced).
    cost_per_hour: float | None = None


@dataclass(slots=True)
class Sweep:
    """A grid of scenario variants (``fleetsched sweep``): one point per combination."""

    name: str
    points: list[SweepPoint]


@dataclass(slots=True)
class PlanCandidate:
    gpu: str
    tp: int
    replicas: int
    cost_per_hour: float
    meets_slo: bool
    summary: dict[str, Any]

    @property
    def fleet(self) -> str:
        return f"{self.replicas} x {self.gpu} TP{self.tp}"


@dataclass(slots=True)
class Plan:
    """A capacity plan (``fleetsched plan``): the fleets simulated and the one chosen.

    ``slo`` maps a summary metric path (``"ttft_s.p99"``) to its bound in seconds.
    """

    name: str
    slo: dict[str, float]
    candidates: list[PlanCandidate]
    choice: PlanCandidate | None


@dataclass(slots=True)
class Fidelity:
    """One scenario simulated and run live (``fleetsched fidelity``): two runs to overlay."""

    name: str
    sim: Run
    live: Run
    target: str | None = None


@dataclass(slots=True)
class ReportData:
    runs: list[Run] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    fidelity: list[Fidelity] = field(default_factory=list)
    title: str = "fleetsched report"

    def runs_with_requests(self) -> list[Run]:
        return [r for r in self.runs if r.requests is not None and r.requests["id"].size]

    def runs_with_series(self) -> list[Run]:
        return [r for r in self.runs if r.series is not None and r.series.t_s.size]
