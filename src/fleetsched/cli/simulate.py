"""``fleetsched simulate``: run one scenario and print its summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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
    RouterOpt,
    SampleIntervalOpt,
    ScenarioOpt,
    SeedOpt,
    TpOpt,
    TraceOpt,
    check_output,
    check_records_output,
    engine_flags,
    resolve_scenario,
    sample_interval,
)
from fleetsched.core.config import LlamaCppConfig, Scenario
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.metrics.io import write_records
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import summary_table
from fleetsched.metrics.timeseries import write_series
from fleetsched.sim.build import group_kv_blocks
from fleetsched.sim.run import simulate as run_simulation
from fleetsched.sim.run import with_scenario
from fleetsched.workload import (
    apply_transforms,
    build_workflows,
    generates_arrivals,
    is_workflow_workload,
    load_trace,
)

EXAMPLES = """
Examples:

  fleetsched simulate                                   # embedded default scenario

  fleetsched simulate --trace ../shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv
  --instances 4 --summary-json out/summary.json --requests-out out/requests.csv

  fleetsched simulate --scenario my.yaml --router round_robin --rate-scale 2 --seed 7

  fleetsched simulate --max-num-seqs 128 --no-prefix-caching --preemption-mode swap

  fleetsched simulate --router cache_aware --report report.html
"""

Opt = typer.Option


def describe_fleet(sc: Scenario) -> str:
    """The instance groups, e.g. ``4 × H100-SXM, Llama-3.1-8B, tp 1``."""
    return "; ".join(
        f"{g.count} × {g.gpu}, {g.model}, tp {g.tp}" + (f" ({g.role})" if g.role != "mixed" else "")
        for g in sc.cluster
    )


def describe_policies(sc: Scenario) -> str:
    """E.g. ``router round_robin, admission aggressive, ordering fcfs, preemption newest``."""
    p = sc.policies
    return ", ".join(
        f"{kind} {getattr(p, kind).name}"
        for kind in ("router", "admission", "ordering", "preemption")
    )


def kv_capacity(sc: Scenario) -> str:
    """KV-cache capacity of each instance, by group (vLLM's "# GPU blocks")."""
    parts = []
    for g in sc.cluster:
        label = f"{g.name}: " if len(sc.cluster) > 1 else ""
        if isinstance(g.engine, LlamaCppConfig):
            e = g.engine
            parts.append(f"{label}{e.parallel} slots × {e.ctx // e.parallel:,} tokens")
            continue
        blocks, bt = group_kv_blocks(g), g.engine.block_tokens
        parts.append(f"{label}{blocks:,} blocks × {bt} tokens = {blocks * bt:,} tokens")
    return "KV cache per instance: " + "; ".join(parts)


def _tap(stream: Iterator[Request], span: list[float]) -> Iterator[Request]:
    """Pass ``stream`` through, keeping the first and the last arrival time in ``span``."""
    for r in stream:
        if not span:
            span += [r.arrival_s, r.arrival_s]
        span[1] = r.arrival_s
        yield r


def check_workload(sc: Scenario, quiet: bool = False) -> int | None:
    """Read a trace workload through once before the run, so a bad row fails now and not
    after minutes of simulation; return its request count (``None``: unknown until run).

    A workload its transforms leave empty raises :class:`InputError`."""
    wl, tf = sc.workload, sc.workload.transforms
    if is_workflow_workload(wl):
        return _check_workflows(sc)
    if wl.trace is None:
        assert wl.synthetic is not None
        if tf.start_s is not None or tf.end_s is not None or tf.sample is not None:
            return None
        return min(tf.first_n or wl.synthetic.num_requests, wl.synthetic.num_requests)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("checking {task.fields[name]}"),
        TextColumn("{task.completed:,} requests"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=True,
    )
    span: list[float] = []
    raw = load_trace(wl.trace, wl.format, generated_rate=wl.generated_rate, seed=sc.seed)
    n = 0
    with progress:
        task = progress.add_task("check", total=None, name=Path(wl.trace).name)
        for n, _ in enumerate(apply_transforms(_tap(raw, span), tf, sc.seed), 1):
            if n & 4095 == 0:
                progress.update(task, completed=n)
    if n == 0:
        kept = ", ".join(
            f"{k}={getattr(tf, k)}" for k in ("start_s", "end_s", "sample") if getattr(tf, k)
        )
        raise InputError(
            f"no requests left to simulate: {kept} keeps none of the trace's requests "
            f"(arrivals read: {span[0]:,.1f} s to {span[1]:,.1f} s)",
            "workload.transforms",
        )
    return n


def _check_workflows(sc: Scenario) -> int:
    """Read a workflow workload through once (a bad line fails now); return its call count."""
    n = calls = 0
    for n, wf in enumerate(build_workflows(sc.workload, sc.seed), 1):  # noqa: B007
        calls += len(wf.calls)
    if n == 0:
        raise InputError("no workflows left to simulate", "workload.transforms")
    return calls


@app.command(epilog=EXAMPLES)
def simulate(
    scenario: ScenarioOpt = None,
    trace: TraceOpt = None,
    trace_format: FormatOpt = None,
    generated_rate: GeneratedRateOpt = None,
    instances: InstancesOpt = None,
    gpu: GpuOpt = None,
    model: ModelOpt = None,
    tp: TpOpt = None,
    router: RouterOpt = None,
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
    fast_forward: Annotated[bool, Opt(help="Decode fast-forward (same results).")] = True,
    summary_json: Annotated[Path | None, Opt(help="Write the summary as JSON.")] = None,
    requests_out: Annotated[Path | None, Opt(help="Per-request rows (.csv or .parquet).")] = None,
    timeseries_out: Annotated[
        Path | None, Opt(help="Per-instance samples over time (.csv or .parquet).")
    ] = None,
    sample_interval_s: SampleIntervalOpt = None,
    report: ReportOpt = None,
    quiet: Annotated[
        bool, Opt("--quiet", "-q", help="Print nothing (write only the files asked for).")
    ] = False,
) -> None:
    """Simulate a fleet serving a workload and print latency, throughput and SLO figures."""
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
    check_output(summary_json, "--summary-json")
    check_records_output(requests_out)
    check_records_output(timeseries_out, "--timeseries-out")
    check_output(report, "--report")
    interval = sample_interval(sample_interval_s, report is not None or timeseries_out is not None)
    if report is not None:
        from fleetsched.report import require_plotly

        require_plotly()  # before the run, not after it
    total = check_workload(sc, quiet)
    say = (lambda *a, **k: None) if quiet else console.print
    say(Text(f"{sc.name}: {describe_fleet(sc)}", style="bold"))
    say(Text(describe_policies(sc)))
    say(Text(kv_capacity(sc)))
    wl = sc.workload
    if wl.trace is not None and generates_arrivals(wl.trace, wl.format):
        say(
            Text(
                f"arrivals generated: the trace has no timestamps, so requests arrive as a "
                f"Poisson process at {wl.generated_rate:g} req/s (--generated-rate)"
            )
        )
    progress = Progress(
        TextColumn("[bold]simulating[/]"),
        BarColumn(),
        TextColumn("{task.completed} requests"),
        TextColumn("sim {task.fields[t]:.0f} s"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task("sim", total=total, t=0.0)
        result = run_simulation(
            sc,
            fast_forward=fast_forward,
            progress=lambda done, t: progress.update(task, completed=done, t=t),
            sample_interval_s=interval,
        )
    s = result.summary
    if s["requests"] == 0:
        raise InputError("no requests left to simulate", "workload.transforms")
    say(summary_table(s, title=None))
    say(
        Text(
            f"simulated {s['duration_s']:.1f} s in {result.wall_s:.2f} s wall "
            f"({s['duration_s'] / max(result.wall_s, 1e-9):.0f}x real time), "
            f"{s['engine_steps']} engine steps"
        )
    )
    if summary_json is not None:
        summary_json.write_text(summary_to_json(with_scenario(s, sc)))
    if requests_out is not None:
        write_records(result.records, requests_out)
    if timeseries_out is not None and result.timeseries is not None:
        write_series(result.timeseries, timeseries_out)
    if report is not None:
        from fleetsched.cli.report import write_and_say
        from fleetsched.report import ReportData, run_from_result

        run = run_from_result(sc.policies.router.name, sc, result)
        write_and_say(ReportData([run], title=f"{sc.name}: {run.label}"), report, quiet=quiet)
