"""``fleetsched fidelity``: a scenario through ``simulate`` and through ``bench``, compared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from fleetsched.cli.app import app, console
from fleetsched.cli.options import (
    RateScaleOpt,
    RequestsOpt,
    SeedOpt,
    check_output,
    resolve_scenario,
)
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json

EXAMPLES = """
Examples:

  fleetsched emulate --scenario one.yaml --speedup 10 --port 8000 &

  fleetsched fidelity --scenario one.yaml --target http://127.0.0.1:8000

  fleetsched fidelity --scenario one.yaml --target http://127.0.0.1:8000 --requests 300
  --markdown --summary-json out/fidelity.json
"""

Opt = typer.Option


@app.command(epilog=EXAMPLES)
def fidelity(
    scenario: Annotated[Path, Opt("--scenario", "-s", help="Scenario YAML file.")],
    target: Annotated[str, Opt(help="Base URL of the live server the scenario describes.")],
    speedup: Annotated[
        float | None, Opt(help="Trace seconds per wall second (default: the emulator's).")
    ] = None,
    requests: RequestsOpt = None,
    rate_scale: RateScaleOpt = None,
    seed: SeedOpt = None,
    endpoint: Annotated[str, Opt(help="completions (token-id prompts) or chat.")] = "completions",
    summary_json: Annotated[
        Path | None, Opt(help="Write both summaries and the comparison as JSON.")
    ] = None,
    markdown: Annotated[bool, Opt(help="Also print the table as Markdown.")] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a scenario through the simulator and, with bench, against a live target; print
    TTFT, TPOT and E2E at p50/p90/p99, throughput and prefix hit rate with relative errors."""
    from fleetsched.bench import BenchConfig
    from fleetsched.cli.bench import run_with_progress
    from fleetsched.fidelity import fidelity_table, markdown_table, run_fidelity

    if endpoint not in ("completions", "chat"):
        raise InputError(f"--endpoint must be completions or chat, got {endpoint!r}")
    sc = resolve_scenario(scenario, rate_scale=rate_scale, requests=requests, seed=seed)
    check_output(summary_json, "--summary-json")
    total = sc.workload.transforms.first_n
    if sc.workload.synthetic is not None:
        n = sc.workload.synthetic.num_requests
        total = n if total is None else min(total, n)
    cfg = BenchConfig(target=target, endpoint=endpoint, time_scale=speedup, seed=sc.seed)  # type: ignore[arg-type]
    result = run_fidelity(sc, cfg, run=lambda reqs, c: run_with_progress(reqs, c, total, quiet))
    live = result.live
    title = (
        f"{sc.name}: simulated vs live at {target} ({live['completed']}/{live['requests']} "
        f"requests completed, time scale {live['bench']['time_scale']:g})"
    )
    console.print(fidelity_table(result.rows, title=title))
    if markdown:
        console.print(Text(markdown_table(result.rows)), soft_wrap=True)
    if live["failed"]:
        console.print(Text(f"warning: {live['failed']} live requests failed: {live['errors']}"))
    if summary_json is not None:
        rows = [
            {"figure": r.label, "simulated": r.simulated, "live": r.live, "rel_err": r.rel_err}
            for r in result.rows
        ]
        doc = {"simulated": result.simulated, "live": live, "comparison": rows}
        summary_json.write_text(summary_to_json(doc))
