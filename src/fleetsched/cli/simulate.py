"""``fleetsched simulate``: run one scenario and print its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from fleetsched.metrics.io import write_records
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import summary_table
from fleetsched.metrics.timeseries import write_series
from fleetsched.sim.run import simulate as run_simulation
from fleetsched.sim.run import with_scenario

EXAMPLES = """
Examples:

  fleetsched simulate                                   # embedded default scenario

  fleetsched simulate --trace ../shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv
  --instances 4 --summary-json out/summary.json --requests-out out/requests.csv

  fleetsched simulate --scenario my.yaml --router round_robin --rate-scale 2 --seed 7

  fleetsched simulate --router cache_aware --report report.html
"""

Opt = typer.Option


@app.command(epilog=EXAMPLES)
def simulate(
    scenario: ScenarioOpt = None,
    trace: TraceOpt = None,
    trace_format: FormatOpt = "auto",
    instances: InstancesOpt = None,
    gpu: GpuOpt = None,
    model: ModelOpt = None,
    tp: Annotated[int | None, Opt(help="Tensor-parallel degree.")] = None,
    router: Annotated[str | None, Opt(help="Routing policy.")] = None,
    admission: Annotated[str | None, Opt(help="Admission policy.")] = None,
    ordering: Annotated[str | None, Opt(help="Waiting-queue order policy.")] = None,
    preemption: Annotated[str | None, Opt(help="Preemption victim policy.")] = None,
    rate_scale: RateScaleOpt = None,
    requests: RequestsOpt = None,
    seed: SeedOpt = None,
    fast_forward: Annotated[bool, Opt(help="Decode fast-forward (same results).")] = True,
    summary_json: Annotated[Path | None, Opt(help="Write the summary as JSON.")] = None,
    requests_out: Annotated[Path | None, Opt(help="Per-request rows (.csv or .parquet).")] = None,
    timeseries_out: Annotated[
        Path | None, Opt(help="Per-instance samples over time (.csv or .parquet).")
    ] = None,
    sample_interval_s: SampleIntervalOpt = None,
    report: ReportOpt = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bar or table.")] = False,
) -> None:
    """Simulate a fleet serving a workload and print latency, throughput and SLO figures."""
    sc = resolve_scenario(
        scenario,
        trace=trace,
        trace_format=trace_format,
        instances=instances,
        gpu=gpu,
        model=model,
        tp=tp,
        router=router,
        admission=admission,
        ordering=ordering,
        preemption=preemption,
        rate_scale=rate_scale,
        requests=requests,
        seed=seed,
    )
    interval = sample_interval(sample_interval_s, report is not None or timeseries_out is not None)
    if report is not None:
        from fleetsched.report import require_plotly

        require_plotly()  # before the run, not after it
    total = sc.workload.transforms.first_n
    if sc.workload.synthetic is not None:
        total = min(total or sc.workload.synthetic.num_requests, sc.workload.synthetic.num_requests)
    progress = Progress(
        TextColumn("[bold]simulating[/]"),
        BarColumn(),
        TextColumn("{task.completed} requests"),
        TextColumn("sim {task.fields[t]:.0f} s"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task("sim", total=total, t=0.0)
        result = run_simulation(
            sc,
            fast_forward=fast_forward,
            progress=lambda n, t: progress.update(task, completed=n, t=t),
            sample_interval_s=interval,
        )
    s = result.summary
    if not quiet:
        n = sum(g.count for g in sc.cluster)
        title = (
            f"{sc.name}: {n} instances, router {sc.policies.router.name}, {s['requests']} requests"
        )
        console.print(title, style="bold", highlight=False)
        console.print(summary_table(s, title=None))
        console.print(
            f"simulated {s['duration_s']:.1f} s in {result.wall_s:.2f} s wall "
            f"({s['duration_s'] / max(result.wall_s, 1e-9):.0f}x real time), "
            f"{s['engine_steps']} engine steps"
        )
    full = with_scenario(s, sc)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(summary_to_json(full))
    if requests_out is not None:
        requests_out.parent.mkdir(parents=True, exist_ok=True)
        write_records(result.records, requests_out)
    if timeseries_out is not None and result.timeseries is not None:
        timeseries_out.parent.mkdir(parents=True, exist_ok=True)
        write_series(result.timeseries, timeseries_out)
    if report is not None:
        from fleetsched.cli.report import write_and_say
        from fleetsched.report import ReportData, run_from_result

        run = run_from_result(sc.policies.router.name, sc, result)
        write_and_say(ReportData([run], title=f"{sc.name}: {run.label}"), report)
    if quiet and summary_json is None:
        typer.echo(summary_to_json(full))
