"""``fleetsched compare``: one workload under several routers, side by side."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fleetsched.cli.app import app, console, err_console
from fleetsched.cli.options import (
    FormatOpt,
    GpuOpt,
    InstancesOpt,
    ModelOpt,
    RateScaleOpt,
    ReportOpt,
    RequestsOpt,
    SampleIntervalOpt,
    ScenarioOpt,
    SeedOpt,
    TraceOpt,
    resolve_scenario,
    sample_interval,
)
from fleetsched.core.config import Scenario
from fleetsched.errors import InputError
from fleetsched.metrics.io import write_records
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import compare_table
from fleetsched.metrics.timeseries import write_series
from fleetsched.policies.routing import ROUTERS
from fleetsched.sim.run import simulate, with_scenario
from fleetsched.sweep.grid import run_many, variant

EXAMPLES = """
Examples:

  fleetsched compare --routers round_robin,least_requests,cache_aware

  fleetsched compare --routers round_robin,prefix_load,kv_overlap --instances 8
  --trace ../shared/traces/mooncake_fast25/conversation_trace.jsonl --summary-json cmp.json

  fleetsched compare --routers round_robin,cache_aware,prefix_load --report cmp.html

  fleetsched compare --routers round_robin,cache_aware --summary-json cmp/summary.json
  --requests-out cmp/ --timeseries-out cmp/    # then: fleetsched report cmp/ -o cmp.html
"""

Opt = typer.Option


@dataclass(slots=True, frozen=True)
class Outputs:
    """What each router's run keeps besides its summary."""

    sample_interval_s: float | None = None
    requests_dir: Path | None = None  # writes <router>.requests.csv there
    timeseries_dir: Path | None = None  # writes <router>.timeseries.csv there
    report: bool = False  # returns a report run (records and time series)


def run_router(scenario: Scenario, out: Outputs) -> tuple[dict[str, Any], Any]:
    """One router's run, in a worker process: (summary with its scenario, report run or
    None); the per-request and time-series files are written by the worker itself."""
    res = simulate(scenario, sample_interval_s=out.sample_interval_s)
    name = scenario.policies.router.name
    if out.requests_dir is not None:
        write_records(res.records, out.requests_dir / f"{name}.requests.csv")
    if out.timeseries_dir is not None and res.timeseries is not None:
        write_series(res.timeseries, out.timeseries_dir / f"{name}.timeseries.csv")
    run = None
    if out.report:
        from fleetsched.report import run_from_result

        run = run_from_result(name, scenario, res)
    return with_scenario(res.summary, scenario), run


def compare_routers(
    scenario: Scenario,
    routers: list[str],
    jobs: int,
    on_done: Any = None,
    outputs: Outputs | None = None,
) -> dict[str, tuple[dict[str, Any], Any]]:
    """(summary, report run or None) by router name, in the order given (parallel when
    ``jobs > 1``)."""
    scenarios = [variant(scenario, router=r) for r in routers]
    results = run_many(scenarios, jobs, on_done, fn=partial(run_router, out=outputs or Outputs()))
    return dict(zip(routers, results, strict=True))


@app.command(epilog=EXAMPLES)
def compare(
    routers: Annotated[str, Opt(help="Comma-separated router names.")] = (
        "round_robin,least_requests"
    ),
    scenario: ScenarioOpt = None,
    trace: TraceOpt = None,
    trace_format: FormatOpt = "auto",
    instances: InstancesOpt = None,
    gpu: GpuOpt = None,
    model: ModelOpt = None,
    rate_scale: RateScaleOpt = None,
    requests: RequestsOpt = None,
    seed: SeedOpt = None,
    jobs: Annotated[int, Opt(help="Parallel processes (default: CPU count).")] = 0,
    summary_json: Annotated[Path | None, Opt(help="Write {router: summary} as JSON.")] = None,
    requests_out: Annotated[
        Path | None, Opt(help="Folder for per-request rows, <router>.requests.csv each.")
    ] = None,
    timeseries_out: Annotated[
        Path | None, Opt(help="Folder for per-instance samples, <router>.timeseries.csv each.")
    ] = None,
    sample_interval_s: SampleIntervalOpt = None,
    report: ReportOpt = None,
) -> None:
    """Run the same workload under each router and print one comparison table."""
    names = [r.strip() for r in routers.split(",") if r.strip()]
    if not names:
        raise InputError("--routers needs at least one router name")
    unknown = [r for r in names if r not in ROUTERS]
    if unknown:
        raise InputError(f"unknown router {unknown[0]!r} (known: {', '.join(sorted(ROUTERS))})")
    sc = resolve_scenario(
        scenario,
        trace=trace,
        trace_format=trace_format,
        instances=instances,
        gpu=gpu,
        model=model,
        rate_scale=rate_scale,
        requests=requests,
        seed=seed,
    )
    interval = sample_interval(sample_interval_s, report is not None or timeseries_out is not None)
    if report is not None:
        from fleetsched.report import require_plotly

        require_plotly()  # before the runs, not after them
    for folder in (requests_out, timeseries_out):
        if folder is not None:
            if folder.exists() and not folder.is_dir():
                raise InputError("expected a folder (one file per router goes there)", str(folder))
            folder.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(interval, requests_out, timeseries_out, report is not None)
    jobs = min(len(names), jobs or os.cpu_count() or 1)
    progress = Progress(
        TextColumn("[bold]comparing[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} routers"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        task = progress.add_task("cmp", total=len(names))
        runs = compare_routers(sc, names, jobs, lambda i: progress.advance(task), outputs)
    results = {name: summary for name, (summary, _) in runs.items()}
    n = sum(g.count for g in sc.cluster)
    first = next(iter(results.values()))
    console.print(
        compare_table(results, title=f"{sc.name}: {n} instances, {first['requests']} requests")
    )
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(summary_to_json(results))
    if report is not None:
        from fleetsched.cli.report import write_and_say
        from fleetsched.report import ReportData

        title = f"{sc.name}: {len(names)} routers, {n} instances"
        write_and_say(ReportData([run for _, run in runs.values()], title=title), report)
