"""Per-instance heat maps over time: load (waiting + running requests) and KV use.

With several runs a menu picks the run; all runs share one colour scale per map, so
switching runs compares them.
"""

from __future__ import annotations

import numpy as np

from fleetsched.report.data import ReportData
from fleetsched.report.downsample import TIME_BINS, binned_mean, time_bins
from fleetsched.report.views.common import View, base_layout, f32, subplots
from fleetsched.report.views.timeline import sample_interval, time_span

#: Cells per heat map at most (instances x time bins): a 512-instance fleet gets fewer bins.
MAX_CELLS = 20_000


def build(data: ReportData) -> list[View]:
    runs = data.runs_with_series()
    if not runs:
        return []
    k = max(len(r.series.names) for r in runs if r.series is not None)
    bins = max(min(TIME_BINS, MAX_CELLS // k), 12)
    lo, hi = time_span(runs)
    edges = time_bins(lo, hi, bins, max(sample_interval(r) for r in runs))
    width = float(edges[1] - edges[0])
    maps = []
    for run in runs:
        s = run.series
        assert s is not None
        load = binned_mean(s.t_s, s.load, edges).T  # (instances, bins)
        kv = binned_mean(s.t_s, s.kv_utilization * 100, edges).T
        maps.append((run, s.names, load, kv))
    zmax_load = max(float(np.nanmax(m[2])) if np.isfinite(m[2]).any() else 0.0 for m in maps)
    fig = subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=["load: waiting + running requests", "KV cache in use (%)"],
    )
    for i, (run, names, load, kv) in enumerate(maps):
        common = {"x0": float(edges[0]) + width / 2, "dx": width, "y": names, "visible": i == 0}
        fig.add_heatmap(
            z=f32(load),
            zmin=0,
            zmax=max(zmax_load, 1.0),
            colorscale="Viridis",
            colorbar={"y": 0.79, "len": 0.42, "title": {"text": "req"}},
            name=run.label,
            hovertemplate="%{y}<br>t = %{x:.1f} s<br>%{z:.1f} requests<extra>"
            + run.label
            + "</extra>",
            **common,
            row=1,
            col=1,
        )
        fig.add_heatmap(
            z=f32(kv),
            zmin=0,
            zmax=100,
            colorscale="Inferno",
            colorbar={"y": 0.21, "len": 0.42, "title": {"text": "%"}},
            name=run.label,
            hovertemplate="%{y}<br>t = %{x:.1f} s<br>KV %{z:.0f} %<extra>" + run.label + "</extra>",
            **common,
            row=2,
            col=1,
        )
    if len(maps) > 1:
        buttons = []
        for i, (run, *_) in enumerate(maps):
            visible = [j // 2 == i for j in range(2 * len(maps))]
            buttons.append(
                {"label": run.label, "method": "restyle", "args": [{"visible": visible}]}
            )
        fig.update_layout(
            updatemenus=[
                {"buttons": buttons, "x": 0, "y": 1.12, "xanchor": "left", "showactive": True}
            ]
        )
    fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
    base_layout(fig, height=min(max(420, 2 * (22 * k + 80) + 120), 1400))
    fig.update_layout(margin={"t": 80})
    note = f"Bins of {width:g} s; each cell is the mean of the engine samples taken in it." + (
        " Pick the run in the menu." if len(maps) > 1 else ""
    )
    return [View("instances", "Per-instance load and KV use", fig, note)]
