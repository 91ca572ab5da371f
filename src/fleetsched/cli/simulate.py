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
    RequestsOpt,
    ScenarioOpt,
    SeedOpt,
    TraceOpt,
    resolve_scenario,
)
from fleetsched.metrics.io import write_records
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import summary_table
from fleetsched.sim.run import simulate as run_simulation

EXAMPLES = """
Examples:

  fleetsched simulate                                   # embedded default scenario

  fleetsched simulate --trace ../shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv
  --instances 4 --summary-json out/summary.json --requests-out out/requests.csv

  fleetsched simulate --scenario my.yaml --router round_robin --rate-scale 2 --seed 7
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
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(summary_to_json(s))
    if requests_out is not None:
        requests_out.parent.mkdir(parents=True, exist_ok=True)
        write_records(result.records, requests_out)
    if quiet and summary_json is None:
        typer.echo(summary_to_json(s))
