"""Latency CDFs: TTFT, TPOT and E2E, one line per run on each axis (log scale, ms)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fleetsched.report.data import ReportData, Run
from fleetsched.report.downsample import CDF_POINTS, cdf_points
from fleetsched.report.views.common import View, base_layout, f32, line_style, subplots

METRICS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def summary_points(summary: dict[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, q) at the percentiles (and maximum) a summary holds, for a run without
    per-request data."""
    dist = summary.get(key) or {}
    pts = [(dist.get(k), q) for k, q in PERCENTILES if isinstance(dist.get(k), int | float)]
    return np.array([x for x, _ in pts], dtype=np.float64), np.array([q for _, q in pts])


def cdf_figure(runs: Sequence[Run], styles: Sequence[dict[str, Any]]) -> Any:
    """One subplot per metric; a run without per-request columns is drawn through its
    summary's percentiles (marked)."""
    fig = subplots(rows=1, cols=len(METRICS), subplot_titles=[f"{t} (ms)" for _, t in METRICS])
    for run, style in zip(runs, styles, strict=True):
        for col, (key, _) in enumerate(METRICS, start=1):
            if run.requests is not None:
                x, y = cdf_points(run.requests[key])
                mode = "lines"
            else:
                x, y = summary_points(run.summary, key)
                mode = "lines+markers"
            keep = x > 0  # a log axis cannot show 0
            fig.add_scatter(
                x=f32(x[keep] * 1000),
                y=f32(y[keep]),
                mode=mode,
                name=run.label,
                legendgroup=run.label,
                showlegend=col == 1,
                line={**style, "width": 2},
                marker={"color": style["color"], "size": 8},
                hovertemplate=f"{run.label}<br>%{{x:.1f}} ms<br>P(X ≤ x) = %{{y:.4f}}"
                "<extra></extra>",
                row=1,
                col=col,
            )
    fig.update_xaxes(type="log")  # the subplot titles give the unit
    fig.update_yaxes(range=[0, 1.02], title_text="fraction of requests", col=1)
    base_layout(fig)
    return fig


def build(data: ReportData) -> list[View]:
    runs = data.runs_with_requests()
    if not runs:
        return []
    fig = cdf_figure(runs, [line_style(data.runs.index(r)) for r in runs])
    note = (
        "Fraction of completed requests at or below each latency. Each curve has at most"
        f" {CDF_POINTS} points: every percentile from 0 to 99, then a log-spaced tail up to"
        " the maximum. Click a legend entry to hide a run."
    )
    return [View("latency-cdf", "Latency distributions", fig, note)]
