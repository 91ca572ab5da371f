"""``fleetsched compare``: one workload under several routers, side by side."""

from __future__ import annotations

import os
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
    RequestsOpt,
    ScenarioOpt,
    SeedOpt,
    TraceOpt,
    resolve_scenario,
)
from fleetsched.core.config import Scenario
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import compare_table
from fleetsched.policies.routing import ROUTERS
from fleetsched.sweep.grid import run_many, variant

EXAMPLES = """
Examples:

  fleetsched compare --routers round_robin,least_requests,cache_aware

  fleetsched compare --routers all --instances 8 --requests 2000

  fleetsched compare --routers round_robin,prefix_load,kv_overlap --instances 8
  --trace ../shared/traces/mooncake_fast25/conversation_trace.jsonl --summary-json cmp.json
"""

Opt = typer.Option


def compare_routers(
    scenario: Scenario, routers: list[str], jobs: int, on_done: Any = None
) -> dict[str, dict[str, Any]]:
    """Summaries by router name, in the order given (parallel when ``jobs > 1``)."""
    scenarios = [variant(scenario, router=r) for r in routers]
    results = run_many(scenarios, jobs, on_done)
    return dict(zip(routers, results, strict=True))


def router_names(spec: str) -> list[str]:
    """``--routers``: comma-separated names (``all`` = every registered router, in registry
    order), duplicates dropped; InputError for an unknown name."""
    names: list[str] = []
    for r in (x.strip() for x in spec.split(",")):
        for name in ROUTERS if r == "all" else [r] if r else []:
            if name not in names:
                names.append(name)
    if not names:
        raise InputError("--routers needs at least one router name (or 'all')")
    unknown = [r for r in names if r not in ROUTERS]
    if unknown:
        raise InputError(
            f"unknown router {unknown[0]!r} (known: all, {', '.join(sorted(ROUTERS))})"
        )
    return names


@app.command(epilog=EXAMPLES)
def compare(
    routers: Annotated[
        str, Opt(help="Comma-separated router names, or 'all' for every registered router.")
    ] = "round_robin,least_requests",
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
) -> None:
    """Run the same workload under each router and print one comparison table."""
    names = router_names(routers)
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
        results = compare_routers(sc, names, jobs, lambda i: progress.advance(task))
    n = sum(g.count for g in sc.cluster)
    first = next(iter(results.values()))
    console.print(
        compare_table(results, title=f"{sc.name}: {n} instances, {first['requests']} requests")
    )
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(summary_to_json(results))
