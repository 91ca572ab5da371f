"""Simulation against a live run of the same scenario (``fleetsched fidelity``): latency
distributions overlaid (simulated solid, live dashed) and the relative error figure by
figure, as ``fleetsched fidelity`` prints it (``(live - simulated) / simulated``)."""

from __future__ import annotations

from fleetsched.fidelity import compare, fmt_err, fmt_figure
from fleetsched.report.data import Fidelity, ReportData
from fleetsched.report.views.common import PALETTE, View, html_table
from fleetsched.report.views.latency import cdf_figure


def error_rows(f: Fidelity) -> list[list[str]]:
    """(figure, simulated, live, error) rows of the figures either side has."""
    return [
        [r.label, fmt_figure(r.kind, r.simulated), fmt_figure(r.kind, r.live), fmt_err(r.rel_err)]
        for r in compare(f.sim.summary, f.live.summary)
        if r.simulated == r.simulated or r.live == r.live  # not both NaN
    ]


def build(data: ReportData) -> list[View]:
    views = []
    for n, f in enumerate(data.fidelity):
        styles = [{"color": PALETTE[0], "dash": "solid"}, {"color": PALETTE[1], "dash": "dash"}]
        fig = cdf_figure([f.sim, f.live], styles)
        table = html_table(["figure", "simulated", "live", "error"], error_rows(f))
        target = f" against {f.target}" if f.target else ""
        note = (
            "The same scenario simulated and run live" + target + ". Without per-request"
            " records a side is drawn through its summary's p50, p90, p95, p99 and maximum."
            " Error: (live - simulated) / simulated."
        )
        views.append(View(f"fidelity-{n}", f"Simulated vs live: {f.name}", fig, note, table))
    return views
