"""One self-contained HTML report from any run: ``fleetsched report PATH... -o report.html``.

``load`` reads the files that ``simulate``, ``compare``, ``sweep``, ``plan``, ``bench`` and
``fidelity`` write (or folders of them) into a :class:`ReportData`; ``run_from_result`` makes
a run straight from a simulation; ``write_report`` draws every view whose data is present
(``views/``) into one page with plotly.js embedded (``page.py``). plotly is an optional
dependency (``pip install 'fleetsched[report]'``), imported only when a page is drawn.
"""

from __future__ import annotations

from fleetsched.core.config import Scenario
from fleetsched.report.data import Fidelity, Plan, ReportData, Run, Sweep, request_columns
from fleetsched.report.load import load
from fleetsched.report.page import render, write_report
from fleetsched.report.views.common import require_plotly
from fleetsched.sim.run import SimResult, with_scenario


def run_from_result(label: str, scenario: Scenario, result: SimResult) -> Run:
    """A report run from a finished simulation (records, summary and any time series)."""
    return Run(
        label,
        with_scenario(result.summary, scenario),
        request_columns(result.records),
        result.timeseries,
    )


__all__ = [
    "Fidelity",
    "Plan",
    "ReportData",
    "Run",
    "Sweep",
    "load",
    "render",
    "require_plotly",
    "run_from_result",
    "write_report",
]
