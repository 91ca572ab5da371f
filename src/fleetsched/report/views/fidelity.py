"""Simulation against a live run of the same scenario (``fleetsched fidelity``): the latency
CDFs overlaid (simulated solid, live dashed) and the relative error percentile by percentile.
"""

from __future__ import annotations

import math
from typing import Any

from fleetsched.report.data import Fidelity, ReportData
from fleetsched.report.views.common import PALETTE, View, html_table
from fleetsched.report.views.latency import cdf_figure

ROWS = (
    *(
        (f"{name} {stat}", key, stat, "ms")
        for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))
        for stat in ("p50", "p90", "p99")
    ),
    ("throughput (req/s)", "throughput_req_s", None, "num"),
    ("output tokens/s", "output_tok_s", None, "num"),
    ("prefix hit rate", "prefix_hit_rate", None, "pct"),
)


def _get(summary: dict[str, Any], key: str, stat: str | None) -> float:
    v = (summary.get(key) or {}).get(stat) if stat else summary.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


def _fmt(v: float, unit: str) -> str:
    if not math.isfinite(v):
        return "-"
    return {"ms": f"{v * 1000:,.1f} ms", "pct": f"{v * 100:.1f} %"}.get(unit, f"{v:,.2f}")


def error_rows(f: Fidelity) -> list[list[str]]:
    """(metric, simulated, live, relative error = (sim - live) / live) rows."""
    rows = []
    for label, key, stat, unit in ROWS:
        s, live = _get(f.sim.summary, key, stat), _get(f.live.summary, key, stat)
        if not (math.isfinite(s) or math.isfinite(live)):
            continue
        err = (s - live) / live if math.isfinite(s) and math.isfinite(live) and live else math.nan
        rows.append(
            [label, _fmt(s, unit), _fmt(live, unit), "-" if math.isnan(err) else f"{err:+.1%}"]
        )
    return rows


def build(data: ReportData) -> list[View]:
    views = []
    for n, f in enumerate(data.fidelity):
        f.sim.label, f.live.label = "simulated", "live"
        styles = [{"color": PALETTE[0], "dash": "solid"}, {"color": PALETTE[1], "dash": "dash"}]
        fig = cdf_figure([f.sim, f.live], styles)
        table = html_table(["metric", "simulated", "live", "error"], error_rows(f))
        target = f" against {f.target}" if f.target else ""
        note = (
            "The same scenario simulated and run live" + target + ". A side without"
            " per-request records is drawn as markers at its summary's percentiles."
        )
        views.append(View(f"fidelity-{n}", f"Simulated vs live: {f.name}", fig, note, table))
    return views
