"""``fleetsched compare``: one workload under several policies or settings, side by side."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
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
    ReportOpt,
    RequestsOpt,
    SampleIntervalOpt,
    ScenarioOpt,
    SeedOpt,
    TpOpt,
    TraceOpt,
    check_output,
    engine_flags,
    resolve_scenario,
    sample_interval,
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
from fleetsched.metrics.io import write_records
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import COMPARE_COLUMNS, DEFAULT_COLUMNS, compare_table
from fleetsched.metrics.timeseries import write_series
from fleetsched.policies.routing import ROUTERS
from fleetsched.sim.check import scenario_problems
from fleetsched.sim.run import simulate, with_scenario
from fleetsched.sweep.grid import map_processes, run_many

EXAMPLES = """
Examples:

  fleetsched compare --routers round_robin,least_requests,cache_aware

  fleetsched compare --routers all --instances 8 --requests 2000

  fleetsched compare --routers round_robin,prefix_load,kv_overlap --instances 8
  --trace ../shared/traces/mooncake_fast25/conversation_trace.jsonl --summary-json cmp.json

  fleetsched compare --vary ordering=fcfs,vtc,wfq --router cache_aware

  fleetsched compare --vary cluster.0.engine.max_num_seqs=64,128,256 --columns all

  fleetsched compare --routers round_robin,cache_aware,prefix_load --report cmp.html

  fleetsched compare --routers round_robin,cache_aware --summary-json cmp/summary.json
  --requests-out cmp/ --timeseries-out cmp/    # then: fleetsched report cmp/ -o cmp.html
"""

Opt = typer.Option

DEFAULT_ROUTERS = "round_robin,least_requests"


@dataclass(slots=True, frozen=True)
class Outputs:
    """What each run keeps besides its summary."""

    sample_interval_s: float | None = None
    requests_dir: Path | None = None  # writes <label>.requests.csv there
    timeseries_dir: Path | None = None  # writes <label>.timeseries.csv there
    report: bool = False  # returns a report run (records and time series)


def run_variant(item: tuple[str, Scenario], out: Outputs) -> tuple[dict[str, Any], Any]:
    """One labelled run, in a worker process: (summary with its scenario, report run or
    None); the per-request and time-series files are written by the worker itself."""
    label, scenario = item
    res = simulate(scenario, sample_interval_s=out.sample_interval_s)
    if out.requests_dir is not None:
        write_records(res.records, out.requests_dir / f"{label}.requests.csv")
    if out.timeseries_dir is not None and res.timeseries is not None:
        write_series(res.timeseries, out.timeseries_dir / f"{label}.timeseries.csv")
    run = None
    if out.report:
        from fleetsched.report import run_from_result

        run = run_from_result(label, scenario, res)
    return res.summary, run


def run_variants(
    labelled: list[tuple[str, Scenario]],
    jobs: int,
    on_done: Any = None,
    outputs: Outputs | None = None,
) -> list[tuple[dict[str, Any], Any]]:
    """(summary, report run or None) of each labelled scenario, in order (parallel when
    ``jobs > 1``). Without outputs this is the sweep runner's ``run_many``."""
    if outputs is None or outputs == Outputs():
        summaries = run_many([sc for _, sc in labelled], jobs, on_done)
        return [(s, None) for s in summaries]
    return map_processes(partial(run_variant, out=outputs), labelled, jobs, on_done)


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
    requests_out: Annotated[
        Path | None, Opt(help="Folder for per-request rows, <value>.requests.csv each.")
    ] = None,
    timeseries_out: Annotated[
        Path | None, Opt(help="Folder for per-instance samples, <value>.timeseries.csv each.")
    ] = None,
    sample_interval_s: SampleIntervalOpt = None,
    report: ReportOpt = None,
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
    check_output(report, "--report")
    interval = sample_interval(sample_interval_s, report is not None or timeseries_out is not None)
    if report is not None:
        from fleetsched.report import require_plotly

        require_plotly()  # before the runs, not after them
    for folder, flag in ((requests_out, "--requests-out"), (timeseries_out, "--timeseries-out")):
        if folder is not None:
            if folder.exists() and not folder.is_dir():
                raise InputError(f"{folder} is not a folder (one file per run goes there)", flag)
            folder.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(interval, requests_out, timeseries_out, report is not None)
    labels = [str(v) for v in values]
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
        runs = run_variants(
            list(zip(labels, scenarios, strict=True)),
            jobs,
            lambda i: progress.advance(task),
            outputs,
        )
    summaries = [summary for summary, _ in runs]
    results = dict(zip(labels, summaries, strict=True))
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
        full = {
            k: with_scenario(s, v) for (k, s), v in zip(results.items(), scenarios, strict=True)
        }
        summary_json.write_text(summary_to_json(full))
    if report is not None:
        from fleetsched.cli.report import write_and_say
        from fleetsched.report import ReportData

        title = f"{sc.name}: {len(labels)} runs, each {key} in turn"
        write_and_say(ReportData([run for _, run in runs], title=title), report)
