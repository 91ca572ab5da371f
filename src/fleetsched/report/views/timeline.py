"""TTFT and waiting-queue length over simulated time, binned, one line per run."""

from __future__ import annotations

import math

import numpy as np

from fleetsched.report.data import ReportData, Run
from fleetsched.report.downsample import TIME_BINS, binned_mean, occupancy, time_bins
from fleetsched.report.views.common import View, base_layout, f32, line_style, subplots


def sample_interval(run: Run) -> float:
    t = run.series.t_s if run.series is not None else np.empty(0)
    return float(np.median(np.diff(t))) if t.size > 1 else 0.0


def time_span(runs: list[Run]) -> tuple[float, float]:
    """First arrival (or sample) to last finish (or sample) over ``runs``."""
    lo, hi = math.inf, -math.inf
    for r in runs:
        if r.requests is not None and r.requests["id"].size:
            lo = min(lo, float(r.requests["arrival_s"].min()))
            fin = r.requests["finish_s"]
            if np.isfinite(fin).any():
                hi = max(hi, float(np.nanmax(fin)))
        if r.series is not None and r.series.t_s.size:
            lo, hi = min(lo, float(r.series.t_s[0])), max(hi, float(r.series.t_s[-1]))
    return lo, max(hi, lo)


def queue_length(run: Run, edges: np.ndarray) -> tuple[np.ndarray, str] | None:
    """Waiting requests (all instances) per bin: the mean of the samples when the run was
    sampled, else counted from the records at each bin's middle. None for a live run's
    records: a client never sees when the engine scheduled a request."""
    if run.series is not None and run.series.t_s.size:
        total = run.series.queue_len.sum(axis=1)
        return binned_mean(run.series.t_s, total, edges), "sampled"
    c = run.requests
    if c is not None and np.isfinite(c["first_scheduled_s"]).any():
        mid = (edges[:-1] + edges[1:]) / 2
        return occupancy(c["arrival_s"], c["first_scheduled_s"], mid).astype(float), "records"
    return None


def max_bins(runs: list[Run]) -> int:
    """:data:`TIME_BINS`, or fewer for runs known only by their records: about five
    requests per bin, at least 20 bins, so a short live run's TTFT line is not all gaps."""
    if any(r.series is not None and r.series.t_s.size for r in runs):
        return TIME_BINS
    most = max(r.requests["id"].size for r in runs if r.requests is not None)
    return min(TIME_BINS, max(20, most // 5))


def build(data: ReportData) -> list[View]:
    runs = [r for r in data.runs if r in data.runs_with_requests() or r in data.runs_with_series()]
    if not runs:
        return []
    lo, hi = time_span(runs)
    edges = time_bins(lo, hi, max_bins(runs), max(sample_interval(r) for r in runs))
    width = float(edges[1] - edges[0])
    with_ttft = [r for r in runs if r.requests is not None and r.requests["id"].size]
    queues = {r.label: queue_length(r, edges) for r in runs}
    with_queue = any(q is not None for q in queues.values())
    rows = (["TTFT (ms, mean over requests arriving in the bin)"] if with_ttft else []) + (
        ["waiting requests (all instances)"] if with_queue else []
    )
    fig = subplots(rows=len(rows), cols=1, shared_xaxes=True, subplot_titles=rows)
    sources = set()
    for run in runs:
        style = line_style(data.runs.index(run))
        common = {
            "x0": float(edges[0]) + width / 2,
            "dx": width,
            "name": run.label,
            "legendgroup": run.label,
            "mode": "lines",
            "line": {**style, "width": 1.5},
        }
        row = 1
        if with_ttft:
            if run in with_ttft:
                y = binned_mean(run.requests["arrival_s"], run.requests["ttft_s"], edges)
                fig.add_scatter(
                    y=f32(y * 1000),
                    connectgaps=True,  # a bin where nothing arrived has no TTFT
                    hovertemplate=f"{run.label}<br>t = %{{x:.1f}} s<br>TTFT %{{y:.1f}} ms"
                    "<extra></extra>",
                    **common,
                    row=1,
                    col=1,
                )
                common["showlegend"] = False
            row = 2
        q = queues[run.label]
        if q is not None:
            sources.add(q[1])
            fig.add_scatter(
                y=f32(q[0]),
                hovertemplate=f"{run.label}<br>t = %{{x:.1f}} s<br>%{{y:.1f}} waiting"
                "<extra></extra>",
                **common,
                row=row,
                col=1,
            )
    if with_ttft:
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="time (s)", row=len(rows), col=1)
    base_layout(fig, height=260 * len(rows) + 80)
    how = {
        "sampled": "the mean of the engine samples in the bin",
        "records": "counted from the request records at the bin's middle",
    }
    note = (
        f"Bins of {width:g} s (at most {TIME_BINS}); the TTFT line bridges bins where"
        " nothing arrived."
    )
    if sources:
        note += f" Waiting requests: {'; '.join(how[s] for s in sorted(sources))}."
    live = [r.label for r in runs if queues[r.label] is None]
    if live and with_queue:
        note += f" Not known for {', '.join(live)} (a client does not see the engine's queue)."
    return [View("timeline", "Over time", fig, note)]
