"""Sweep frontiers: p99 TTFT and TPOT against the rate or the fleet's cost (or another swept
number), one line per policy.

The x axis is ``rate_scale`` (``workload.transforms.rate_scale``) when it varies; else the
cost per hour when the fleet varies (GPU, TP or count: ``cluster.N.gpu/tp/count``) and every
point's fleet is priced; else the first numeric grid field that varies. The other varying
fields (usually the router; not the fleet's, on a cost axis) name the lines. Failed points
are listed under the plot.
"""

from __future__ import annotations

import math
from typing import Any

from fleetsched.report.data import ReportData, Sweep, SweepPoint
from fleetsched.report.views.common import View, base_layout, esc, line_style, subplots

RATE_KEYS = ("rate_scale", "workload.transforms.rate_scale")
COST = "cost ($ per hour)"
FLEET_FIELDS = (".gpu", ".tp", ".count")
Y = (("ttft_s", "p99", "TTFT p99 (ms)"), ("tpot_s", "p99", "TPOT p99 (ms)"))


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _fleet_field(k: str) -> bool:
    return k.startswith("cluster.") and k.endswith(FLEET_FIELDS)


def x_axis(sweep: Sweep) -> tuple[str, str]:
    """(kind, name): ``("param", <dotted path>)``, ``("cost", COST)``, or
    ``("index", "point")`` when no numeric field varies."""
    varying = _varying(sweep)
    numeric = [k for k in varying if all(_num(p.params[k]) for p in sweep.points if k in p.params)]
    for k in RATE_KEYS:
        if k in numeric:
            return "param", k
    costs = [p.cost_per_hour for p in sweep.points]
    if any(_fleet_field(k) for k in varying) and None not in costs and len(set(costs)) > 1:
        return "cost", COST
    if numeric:
        return "param", numeric[0]
    return "index", "point"


def _varying(sweep: Sweep) -> list[str]:
    """Parameters with more than one value among the points that set them."""
    keys: dict[str, set[str]] = {}
    for p in sweep.points:
        for k, v in p.params.items():
            keys.setdefault(k, set()).add(repr(v))
    return [k for k, values in keys.items() if len(values) > 1]


def _x(p: SweepPoint, kind: str, name: str, i: int) -> float:
    if kind == "param":
        return float(p.params.get(name, math.nan))
    if kind == "cost" and p.cost_per_hour is not None:
        return p.cost_per_hour
    return float(i)


def lines(sweep: Sweep, x_name: str) -> tuple[list[str], dict[str, list[tuple[int, SweepPoint]]]]:
    """The varying parameters other than the x axis (and other than the fleet's on a cost
    axis), and the points grouped by their values (one line each)."""
    others = [k for k in _varying(sweep) if k != x_name]
    if x_name == COST:
        others = [k for k in others if not _fleet_field(k)]
    groups: dict[str, list[tuple[int, SweepPoint]]] = {}
    for i, p in enumerate(sweep.points):
        label = ", ".join(f"{k}={p.params.get(k)}" for k in others) or sweep.name
        if len(others) == 1:
            label = str(p.params.get(others[0]))
        groups.setdefault(label, []).append((i, p))
    return others, groups


def _metric(summary: dict[str, Any] | None, key: str, stat: str) -> float:
    v = ((summary or {}).get(key) or {}).get(stat)
    return float(v) * 1000 if _num(v) else math.nan


def build(data: ReportData) -> list[View]:
    views = []
    for n, sweep in enumerate(data.sweeps):
        if not sweep.points:
            continue
        kind, x_name = x_axis(sweep)
        fig = subplots(rows=1, cols=len(Y), subplot_titles=[t for *_, t in Y])
        others, groups = lines(sweep, x_name)
        for j, (label, pts) in enumerate(groups.items()):
            ok = sorted(
                ((_x(p, kind, x_name, i), p) for i, p in pts if p.summary is not None),
                key=lambda xp: xp[0],
            )
            for col, (key, stat, _) in enumerate(Y, start=1):
                fig.add_scatter(
                    x=[x for x, _ in ok],
                    y=[_metric(p.summary, key, stat) for _, p in ok],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    line=line_style(j),
                    text=[", ".join(f"{k}={v}" for k, v in p.params.items()) for _, p in ok],
                    hovertemplate=f"{label}<br>%{{text}}<br>{x_name} %{{x}}<br>%{{y:.1f}} ms"
                    "<extra></extra>",
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text=x_name)
        fig.update_yaxes(type="log")
        base_layout(fig)
        failed = [p for p in sweep.points if p.summary is None]
        extra = ""
        if failed:
            items = "".join(
                f"<li><code>{esc(p.params)}</code>: {esc(p.error or 'failed')}</li>" for p in failed
            )
            extra = f"<p>{len(failed)} point(s) failed:</p><ul>{items}</ul>"
        note = (
            f"{len(sweep.points)} points, {len(sweep.points) - len(failed)} ran; x axis: {x_name}"
            + (f"; one line per {', '.join(others)}." if others else ".")
        )
        views.append(View(f"sweep-{n}", f"Sweep frontier: {sweep.name}", fig, note, extra))
    return views
