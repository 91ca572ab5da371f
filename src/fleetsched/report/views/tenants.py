"""Per-tenant latency and share of service (fairness runs): grouped bars, one per run.

Drawn when a run has two tenants or more. Latency is the p99 TTFT of each tenant's
completed requests when the run has per-request records, else the tenant's mean
normalised latency from the summary. The share is the tenant's part of the output tokens
served; a black tick marks its part of the requests, the share a fair scheduler aims at
when requests are alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fleetsched.report.data import ReportData, Run
from fleetsched.report.views.common import View, base_layout, line_style, subplots


def _tenants(run: Run) -> dict[str, dict[str, Any]]:
    per = run.summary.get("per_tenant")
    return per if isinstance(per, dict) else {}


def _latency_ms(run: Run, tenant: str) -> float:
    if run.requests is not None:
        m = run.requests["tenant"] == tenant
        v = run.requests["ttft_s"][m]
        v = v[np.isfinite(v)]
        return float(np.percentile(v, 99)) * 1000 if v.size else math.nan
    x = _tenants(run).get(tenant, {}).get("mean_norm_latency_s")
    return float(x) * 1000 if isinstance(x, int | float) else math.nan


def build(data: ReportData) -> list[View]:
    runs = [r for r in data.runs if len(_tenants(r)) >= 2]
    if not runs:
        return []
    tenants = sorted({t for r in runs for t in _tenants(r)})
    by_records = all(r.requests is not None for r in runs)
    lat_title = "TTFT p99 (ms)" if by_records else "mean normalised latency (ms / token)"
    fig = subplots(rows=1, cols=2, subplot_titles=[lat_title, "share of output tokens (%)"])
    for run in runs:
        color = line_style(data.runs.index(run))["color"]
        per = _tenants(run)
        out_total = sum(float(v.get("output_tokens") or 0) for v in per.values()) or math.nan
        fig.add_bar(
            x=tenants,
            y=[_latency_ms(run, t) for t in tenants],
            name=run.label,
            legendgroup=run.label,
            marker_color=color,
            hovertemplate=f"{run.label}<br>%{{x}}: %{{y:.1f}}<extra></extra>",
            row=1,
            col=1,
        )
        shares = [
            100 * float(per.get(t, {}).get("output_tokens") or 0) / out_total for t in tenants
        ]
        fig.add_bar(
            x=tenants,
            y=shares,
            name=run.label,
            legendgroup=run.label,
            showlegend=False,
            marker_color=color,
            hovertemplate=f"{run.label}<br>%{{x}}: %{{y:.1f}} %<extra></extra>",
            row=1,
            col=2,
        )
    first = _tenants(runs[0])
    req_total = sum(float(v.get("requests") or 0) for v in first.values()) or math.nan
    fig.add_scatter(
        x=tenants,
        y=[100 * float(first.get(t, {}).get("requests") or 0) / req_total for t in tenants],
        mode="markers",
        name="share of requests",
        marker={"symbol": "line-ew-open", "size": 28, "color": "black", "line": {"width": 3}},
        hovertemplate="%{x}: %{y:.1f} % of requests<extra></extra>",
        row=1,
        col=2,
    )
    fig.update_layout(barmode="group")
    base_layout(fig, height=400)
    note = (
        "Left: per-tenant latency"
        + (" (p99 TTFT of completed requests)." if by_records else " (summary only).")
        + " Right: each tenant's part of the output tokens served; the tick is its part of"
        " the requests."
    )
    return [View("tenants", "Tenants: latency and share", fig, note)]
