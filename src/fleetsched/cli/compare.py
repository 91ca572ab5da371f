"""``fleetsched compare``: one workload under several policies or settings, side by side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from fleetsched.cli.app import app, console, err_console
from fleetsched.cli.options import (
    AdmissionOpt,
    BlockSizeOpt,
    FormatOpt,
    GeneratedRateOpt,
    GpuMemoryUtilizationOpt,
    GpuOpt,
    InstancesOpt,
    MaxNumBatchedTokensOpt,
    MaxNumSeqsOpt,
    ModelOpt,
    OrderingOpt,
    PreemptionModeOpt,
    PreemptionOpt,
    PrefixCachingOpt,
    RateScaleOpt,
    RequestsOpt,
    ScenarioOpt,
    SeedOpt,
    TpOpt,
    TraceOpt,
    check_output,
    engine_flags,
    resolve_scenario,
)
from fleetsched.cli.simulate import check_workload, describe_fleet, describe_policies
from fleetsched.core.config import (
    OVERRIDE_ALIASES,
    Scenario,
    apply_overrides,
    format_problem,
    parse_override_value,
)
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import COMPARE_COLUMNS, DEFAULT_COLUMNS, compare_table
from fleetsched.policies.routing import ROUTERS
from fleetsched.sim.check import scenario_problems
from fleetsched.sweep.grid import run_many

EXAMPLES = """
Examples:

  fleetsched compare --routers round_robin,least_requests,cache_aware

  fleetsched compare --routers all --instances 8 --requests 2000

  fleetsched compare --routers round_robin,prefix_load,kv_overlap --instances 8
  --trace ../shared/traces/mooncake_fast25/conversation_trace.jsonl --summary-json cmp.json

  fleetsched compare --vary ordering=fcfs,vtc,wfq --router cache_aware

  fleetsched compare --vary cluster.0.engine.max_num_seqs=64,128,256 --columns all
"""

Opt = typer.Option

DEFAULT_ROUTERS = "round_robin,least_requests"


def variants(scenario: Scenario, key: str, values: list[Any]) -> list[Scenario]:
    """``scenario`` with ``key`` set to each value, each checked before any run starts."""
    field = OVERRIDE_ALIASES.get(key, key)
    out = []
    for v in values:
        where = "--routers" if key == "router" else f"--vary {key}={v}"
        try:
            sc = apply_overrides(scenario, {key: v})
        except InputError as e:
            raise InputError(str(e), where) from None
        problems = scenario_problems(sc, workload=False)
        if problems:
            loc, msg = problems[0]
            path = ".".join(map(str, loc))
            own = path == field or field.startswith(path + ".")  # the value given is the problem
            raise InputError(msg if own else format_problem(loc, msg), where)
        out.append(sc)
    return out


def _split(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise InputError("needs at least one value", what)
    return items


def _vary(text: str) -> tuple[str, list[Any]]:
    key, eq, values = text.partition("=")
    if not eq or not key.strip():
        raise InputError(f"expected KEY=V1,V2,... (got {text!r})", "--vary")
    return key.strip(), [parse_override_value(v) for v in _split(values, "--vary")]


def router_names(text: str) -> list[str]:
    """``--routers``: comma-separated names, ``all`` standing for every registered router (in
    registry order); duplicates dropped. Unknown names fail in the scenario check."""
    names: list[str] = []
    for r in _split(text, "--routers"):
        for name in ROUTERS if r == "all" else [r]:
            if name not in names:
                names.append(name)
    return names


@app.command(epilog=EXAMPLES)
def compare(
    routers: Annotated[
        str | None,
        Opt(
            help=f"Comma-separated routers, or 'all' (default {DEFAULT_ROUTERS}): "
            f"{', '.join(ROUTERS)}."
        ),
    ] = None,
    vary: Annotated[
        str | None,
        Opt(
            help="Compare values of one scenario field instead of routers: KEY=V1,V2,... "
            "KEY is a dotted path (cluster.0.engine.max_num_seqs) or router, admission, "
            "ordering, preemption, rate_scale."
        ),
    ] = None,
    columns: Annotated[
        str | None,
        Opt(help=f"Table columns, or 'all': {', '.join(COMPARE_COLUMNS)}."),
    ] = None,
    scenario: ScenarioOpt = None,
    trace: TraceOpt = None,
    trace_format: FormatOpt = None,
    generated_rate: GeneratedRateOpt = None,
    instances: InstancesOpt = None,
    gpu: GpuOpt = None,
    model: ModelOpt = None,
    tp: TpOpt = None,
    router: Annotated[
        str | None, Opt(help="Router of every run (with --vary of another field).")
    ] = None,
    admission: AdmissionOpt = None,
    ordering: OrderingOpt = None,
    preemption: PreemptionOpt = None,
    max_num_seqs: MaxNumSeqsOpt = None,
    max_num_batched_tokens: MaxNumBatchedTokensOpt = None,
    gpu_memory_utilization: GpuMemoryUtilizationOpt = None,
    block_size: BlockSizeOpt = None,
    prefix_caching: PrefixCachingOpt = None,
    preemption_mode: PreemptionModeOpt = None,
    rate_scale: RateScaleOpt = None,
    requests: RequestsOpt = None,
    seed: SeedOpt = None,
    jobs: Annotated[int, Opt(help="Parallel processes (default: CPU count).")] = 0,
    summary_json: Annotated[Path | None, Opt(help="Write {value: summary} as JSON.")] = None,
) -> None:
    """Run the same workload under each router (or each value of --vary) and print one
    comparison table; the full summaries go to --summary-json."""
    if routers is not None and vary is not None:
        raise InputError("give --routers or --vary, not both (--vary router=a,b is --routers)")
    if vary is not None:
        key, values = _vary(vary)
    else:
        key, values = "router", router_names(routers or DEFAULT_ROUTERS)
    if columns is None:
        cols: list[str] = list(DEFAULT_COLUMNS)
    elif columns.strip() == "all":
        cols = list(COMPARE_COLUMNS)
    else:
        cols = _split(columns, "--columns")
    compare_table({}, columns=cols)  # unknown column names fail now
    check_output(summary_json, "--summary-json")
    sc = resolve_scenario(
        scenario,
        trace=trace,
        trace_format=trace_format,
        generated_rate=generated_rate,
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
        engine=engine_flags(
            max_num_seqs,
            max_num_batched_tokens,
            gpu_memory_utilization,
            block_size,
            prefix_caching,
            preemption_mode,
        ),
    )
    scenarios = variants(sc, key, values)
    check_workload(sc)
    jobs = min(len(scenarios), jobs or os.cpu_count() or 1)
    progress = Progress(
        TextColumn("[bold]comparing[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} runs"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task("cmp", total=len(scenarios))
        summaries = run_many(scenarios, jobs, lambda i: progress.advance(task))
    results = dict(zip(map(str, values), summaries, strict=True))
    n = summaries[0]["requests"]
    if n == 0:
        raise InputError("no requests left to simulate", "workload.transforms")
    console.print(Text(f"{sc.name}: {describe_fleet(sc)}", style="bold"))
    if key != "router":
        console.print(Text(describe_policies(sc)))
    title = f"{n:,} requests, each {key} in turn"
    label = "router" if key == "router" else key.rsplit(".", 1)[-1]
    console.print(compare_table(results, title=title, columns=cols, label=label))
    if summary_json is not None:
        summary_json.write_text(summary_to_json(results))
