"""Live against simulated: one scenario through ``simulate`` and through ``bench``, compared.

:func:`run_fidelity` simulates the scenario, sends the very same request stream (same
workload, same seed) to a live target with ``bench``, and :func:`compare` lines the two
summaries up percentile by percentile: TTFT, TPOT and E2E at p50/p90/p99, throughput, and the
prefix hit rate and preemptions where the server reports them, each with its relative error
``(live - simulated) / simulated``. The target must serve what the scenario's cluster
describes (one emulator of a one-instance scenario, or a gateway in front of N).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from fleetsched.api.aio import run_async
from fleetsched.core.config import Scenario
from fleetsched.core.request import Request
from fleetsched.metrics.table import fmt_ms, fmt_num, fmt_pct

NAN = math.nan

#: (label, summary key, statistic, kind) of each compared figure.
FIGURES: tuple[tuple[str, str, str | None, str], ...] = (
    ("TTFT p50", "ttft_s", "p50", "ms"),
    ("TTFT p90", "ttft_s", "p90", "ms"),
    ("TTFT p99", "ttft_s", "p99", "ms"),
    ("TPOT p50", "tpot_s", "p50", "ms"),
    ("TPOT p90", "tpot_s", "p90", "ms"),
    ("TPOT p99", "tpot_s", "p99", "ms"),
    ("E2E p50", "e2e_s", "p50", "ms"),
    ("E2E p90", "e2e_s", "p90", "ms"),
    ("E2E p99", "e2e_s", "p99", "ms"),
    ("throughput (req/s)", "throughput_req_s", None, "num"),
    ("output (tok/s)", "output_tok_s", None, "num"),
    ("prefix hit rate", "prefix_hit_rate", None, "pct"),
    ("preemptions", "preemptions", None, "int"),
)


@dataclass(slots=True)
class Row:
    label: str
    key: str
    stat: str | None
    kind: str
    simulated: float
    live: float

    @property
    def rel_err(self) -> float:
        """(live - simulated) / simulated; NaN when either is undefined or simulated is 0."""
        s, v = self.simulated, self.live
        if not (math.isfinite(s) and math.isfinite(v)) or s == 0:
            return NAN
        return (v - s) / s


def _value(s: Mapping[str, Any], key: str, stat: str | None) -> float:
    v = (s.get(key) or {}).get(stat) if stat else s.get(key)
    try:
        return NAN if v is None else float(v)
    except (TypeError, ValueError):
        return NAN


def _live_value(live: Mapping[str, Any], key: str, stat: str | None) -> float:
    v = _value(live, key, stat)
    server = live.get("server") or {}
    if key == "prefix_hit_rate" and math.isnan(v):
        v = float(server.get("prefix_hit_rate", NAN))
    if key == "preemptions":  # the client cannot see preemptions; the server may count them
        v = float(server.get("preemptions", NAN))
    return v


def compare(simulated: Mapping[str, Any], live: Mapping[str, Any]) -> list[Row]:
    """The figures of :data:`FIGURES`, simulated against live."""
    return [
        Row(label, key, stat, kind, _value(simulated, key, stat), _live_value(live, key, stat))
        for label, key, stat, kind in FIGURES
    ]


def fmt_figure(kind: str, x: float) -> str:
    """A figure of kind ``ms``, ``pct``, ``int`` or ``num`` as the tables show it."""
    if kind == "ms":
        return fmt_ms(x)
    if kind == "pct":
        return fmt_pct(x)
    if kind == "int":
        return "-" if not math.isfinite(x) else f"{int(x):,}"
    return fmt_num(x)


def fmt_err(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x * 100:+.1f}%"


def fidelity_table(rows: list[Row], title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left")
    for name, justify in (("figure", "left"), ("simulated", "right"), ("live", "right")):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    t.add_column("error", justify="right")
    for r in rows:
        t.add_row(
            r.label, fmt_figure(r.kind, r.simulated), fmt_figure(r.kind, r.live), fmt_err(r.rel_err)
        )
    return t


def markdown_table(rows: list[Row]) -> str:
    """The comparison as a Markdown table (for READMEs and reports)."""
    out = ["| figure | simulated | live | error |", "|---|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r.label} | {fmt_figure(r.kind, r.simulated)} | {fmt_figure(r.kind, r.live)} "
            f"| {fmt_err(r.rel_err)} |"
        )
    return "\n".join(out)


@dataclass(slots=True)
class FidelityResult:
    simulated: dict[str, Any]
    live: dict[str, Any]
    rows: list[Row]
    bench_run: Any


def run_fidelity(
    scenario: Scenario,
    bench_config: Any,
    run: Callable[[Iterator[Request], Any], Any] | None = None,
) -> FidelityResult:
    """Simulate ``scenario``, send its workload to the target with ``bench_config``
    (:class:`~fleetsched.bench.BenchConfig`) and compare. ``run(requests, config)`` runs
    the bench (default: :func:`~fleetsched.bench.run_bench` on a new event loop, so call
    this from synchronous code)."""
    from fleetsched.bench import bench_summary, run_bench
    from fleetsched.sim.run import simulate
    from fleetsched.workload import build_workload

    if run is None:

        def run(reqs: Iterator[Request], cfg: Any) -> Any:
            return run_async(run_bench(reqs, cfg))

    sim = simulate(scenario)
    bench_run = run(build_workload(scenario.workload, scenario.seed), bench_config)
    live = bench_summary(bench_run, scenario.slo_classes)
    return FidelityResult(sim.summary, live, compare(sim.summary, live), bench_run)


__all__ = [
    "FIGURES",
    "FidelityResult",
    "Row",
    "compare",
    "fidelity_table",
    "markdown_table",
    "run_fidelity",
]
