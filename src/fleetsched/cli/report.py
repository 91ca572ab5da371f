"""``fleetsched report``: one self-contained HTML page from the outputs of any run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetsched.cli.app import app, err_console

if TYPE_CHECKING:
    from fleetsched.report import ReportData

EXAMPLES = """
Examples:

  fleetsched simulate --summary-json out/summary.json --requests-out out/requests.csv
  --timeseries-out out/timeseries.csv && fleetsched report out/ -o report.html

  fleetsched compare --routers round_robin,cache_aware --summary-json cmp/summary.json
  --requests-out cmp/ --timeseries-out cmp/ && fleetsched report cmp/ -o cmp.html

  fleetsched compare --routers round_robin,cache_aware --report cmp.html   # in one go
"""


def write_and_say(
    data: ReportData, out: Path, plain_js: bool = False, *, quiet: bool = False
) -> None:
    """Write the report and print one line (unless ``quiet``): where, how big, how many
    views."""
    from fleetsched.report import write_report
    from fleetsched.report.page import n_views
    from fleetsched.report.views import build_views

    size = write_report(data, out, compress_js=not plain_js)
    if quiet:
        return
    views = len(build_views(data))
    err_console.print(
        f"wrote {out} ({size / 1e6:.1f} MB, {n_views(views)})",
        highlight=False,
        soft_wrap=True,
    )


@app.command(epilog=EXAMPLES)
def report(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Summary JSON, per-request CSV/Parquet and time-series files, or folders of"
            " them (from simulate, compare, sweep, plan, bench, fidelity).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    prices: Annotated[
        Path | None,
        typer.Option(help="YAML prices {GPU: USD per GPU-hour} for a sweep's cost axis."),
    ] = None,
    plain_js: Annotated[
        bool,
        typer.Option(
            "--plain-js",
            help="Embed plotly.js uncompressed (+3 MB) for browsers without DecompressionStream.",
        ),
    ] = False,
) -> None:
    """Draw every view the inputs allow into one HTML file that works offline.

    Latency CDFs, TTFT and queue length over time, per-instance load and KV heat maps, cache
    hits / SLO attainment / goodput, per-tenant latency and share, sweep and plan frontiers,
    simulated-vs-live overlays: each drawn only when its data is present.
    """
    from fleetsched.report import load, require_plotly

    require_plotly()
    data = load(paths, title=title, prices=prices)
    write_and_say(data, out, plain_js)
