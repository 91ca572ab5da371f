"""``fleetsched sweep``: a grid of scenario variants, in processes or on Ray, cached."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fleetsched.cli.app import app, console, err_console
from fleetsched.cli.options import RequestsOpt, ScenarioOpt, SeedOpt, resolve_scenario
from fleetsched.metrics.table import fmt_ms, fmt_num, fmt_pct
from fleetsched.sweep.grid import PointResult, expand_grid, parse_grid, run_points
from fleetsched.sweep.output import point_records, write_json, write_parquet

EXAMPLES = """
Examples:

  fleetsched sweep --grid 'router=round_robin,cache_aware;rate_scale=0.5,1,2' -o out/sweep

  fleetsched sweep --scenario my.yaml --grid 'cluster.0.count=4,8;cluster.0.tp=1,2' --ray

  fleetsched sweep --scenario my.yaml --grid 'policies.router.params.cache_threshold=0.3,0.5'
  --ray --ray-address ray://head:10001 -o out/sweep
"""

Opt = typer.Option


def sweep_table(points: list[dict[str, Any]], results: list[PointResult]) -> Table:
    t = Table(title=f"{len(points)} points")
    paths = list(points[0]) if points else []
    for p in paths:
        t.add_column(p)
    for head in ("TTFT p99 ms", "TPOT p99 ms", "goodput req/s", "SLO att.", "status"):
        t.add_column(head, justify="right" if head != "status" else "left")
    for ov, r in zip(points, results, strict=True):
        s = r.summary or {}
        err = r.error or ""
        status = (
            "cached"
            if r.cached
            else "ok"
            if r.ok
            else f"failed: {err[:60]}" + ("..." if len(err) > 60 else "")
        )
        t.add_row(
            *(str(ov[p]) for p in paths),
            fmt_ms((s.get("ttft_s") or {}).get("p99")),
            fmt_ms((s.get("tpot_s") or {}).get("p99")),
            fmt_num(s.get("goodput_req_s")),
            fmt_pct(s.get("slo_attainment")),
            status,
        )
    return t


@app.command(epilog=EXAMPLES)
def sweep(
    grid: Annotated[
        str, Opt(help="PATH=V1,V2;PATH=... over any scenario field (router=, rate_scale=).")
    ],
    scenario: ScenarioOpt = None,
    requests: RequestsOpt = None,
    seed: SeedOpt = None,
    jobs: Annotated[int, Opt(help="Parallel processes or Ray CPUs (default: CPU count).")] = 0,
    ray: Annotated[bool, Opt("--ray", help="Run the points as Ray tasks.")] = False,
    ray_address: Annotated[
        str | None, Opt(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    out: Annotated[Path, Opt("--out", "-o", help="Output folder (cache and results).")] = Path(
        "sweep-out"
    ),
) -> None:
    """Run every combination of a grid; re-runs only simulate what the cache lacks."""
    base = resolve_scenario(scenario, requests=requests, seed=seed)
    expanded = expand_grid(base, parse_grid(grid))
    points = [ov for ov, _ in expanded]
    scenarios = [sc for _, sc in expanded]
    failed = 0
    progress = Progress(
        TextColumn("[bold]sweeping[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("points, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )

    def done(i: int, r: PointResult) -> None:
        nonlocal failed
        if not r.ok:
            failed += 1
            err_console.print(
                f"point {i} ({points[i]}) failed: {r.error}", highlight=False, soft_wrap=True
            )
        progress.update(task, advance=1, failed=failed)

    with progress:
        task = progress.add_task("sweep", total=len(scenarios), failed=0)
        results = run_points(
            scenarios,
            jobs=jobs,
            ray=ray or ray_address is not None,
            ray_address=ray_address,
            cache_dir=out / "cache",
            on_done=done,
        )
    console.print(sweep_table(points, results))
    records = point_records(points, results, scenarios)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summaries.json", records)
    wrote = [str(out / "summaries.json")]
    if write_parquet(out / "summaries.parquet", records):
        wrote.append(str(out / "summaries.parquet"))
    else:
        err_console.print("Parquet skipped: pip install 'fleetsched[parquet]'")
    cached = sum(r.cached for r in results)
    console.print(
        f"{len(results)} points: {len(results) - cached - failed} simulated, {cached} from "
        f"the cache, {failed} failed; wrote {', '.join(wrote)}",
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)
