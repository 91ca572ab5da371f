"""Prefix-cache hit rate, SLO attainment and goodput: one bar per run."""

from __future__ import annotations

import math

from fleetsched.report.data import ReportData
from fleetsched.report.views.common import View, base_layout, line_style, subplots

BARS = (
    ("prefix_hit_rate", "prefix hit rate (%)", 100.0),
    ("slo_attainment", "SLO attainment (%)", 100.0),
    ("goodput_req_s", "goodput (req/s)", 1.0),
)


def _value(summary: dict, key: str) -> float:
    v = summary.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan


def build(data: ReportData) -> list[View]:
    runs = data.runs
    shown = [b for b in BARS if any(math.isfinite(_value(r.summary, b[0])) for r in runs)]
    if not runs or not shown:
        return []
    fig = subplots(rows=1, cols=len(shown), subplot_titles=[title for _, title, _ in shown])
    labels = [r.label for r in runs]
    colors = [line_style(i)["color"] for i in range(len(runs))]
    for col, (key, title, scale) in enumerate(shown, start=1):
        ys = [_value(r.summary, key) * scale for r in runs]
        fig.add_bar(
            x=labels,
            y=ys,
            marker_color=colors,
            showlegend=False,
            text=[f"{y:.1f}" if math.isfinite(y) else "" for y in ys],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}<br>%{y:.2f}<extra>" + title + "</extra>",
            row=1,
            col=col,
        )
    fig.update_xaxes(tickangle=-30)
    base_layout(fig, height=400)
    note = (
        "Prefix hit rate: cached / all prompt tokens of completed requests. SLO attainment:"
        " requests meeting their class's TTFT and TPOT targets / all requests. Goodput:"
        " requests meeting their SLO per second (docs/metrics.md)."
    )
    return [View("outcomes", "Cache hits, SLO attainment and goodput", fig, note)]
