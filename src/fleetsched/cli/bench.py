"""``fleetsched bench``: open-loop load against an OpenAI-compatible server, measured like
``simulate`` measures (same summary JSON and per-request CSV, plus live-only fields)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from fleetsched.api.aio import run_async
from fleetsched.cli.app import app, console, err_console
from fleetsched.cli.options import check_output, check_records_output, resolve_scenario
from fleetsched.core.config import (
    LengthConfig,
    SLOClass,
    SyntheticConfig,
    TransformConfig,
    WorkloadConfig,
)
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json
from fleetsched.metrics.table import summary_table

EXAMPLES = """
Examples:

  fleetsched bench --target http://127.0.0.1:8000 --rate 4 --duration 60

  fleetsched bench --target http://127.0.0.1:8000 --trace chat.jsonl --requests 500
  --summary-json out/live.json --requests-out out/live.csv

  fleetsched bench --target http://127.0.0.1:8001 --scenario my.yaml --max-concurrency 64
"""

Opt = typer.Option


def bench_workload(
    *,
    trace: Path | None,
    trace_format: str,
    rate: float | None,
    duration: float | None,
    scenario: Path | None,
    requests: int | None,
    rate_scale: float | None,
    seed: int | None,
    prompt_tokens: int,
    output_tokens: int,
) -> tuple[Iterator[Request], dict[str, SLOClass], int, int | None]:
    """The request stream (with its SLO classes, seed and length when known) of exactly one of
    ``--trace``, ``--rate``/``--duration`` or ``--scenario``."""
    from fleetsched.workload import build_workload

    given = [n for n, v in (("--trace", trace), ("--rate", rate), ("--scenario", scenario)) if v]
    if len(given) != 1:
        raise InputError("give exactly one of --trace, --rate (with --duration) or --scenario")
    if (rate is None) != (duration is None):
        raise InputError("--rate and --duration go together")
    slo: dict[str, SLOClass] = {"default": SLOClass()}
    sc_seed = 0
    total: int | None = None
    if scenario is not None:
        sc = resolve_scenario(scenario, rate_scale=rate_scale, requests=requests, seed=seed)
        wl, slo, sc_seed = sc.workload, dict(sc.slo_classes), sc.seed
        rate_scale = requests = None  # applied
        if wl.synthetic is not None:
            total = wl.synthetic.num_requests
    elif trace is not None:
        if not trace.exists():
            raise InputError("no such trace file", str(trace))
        wl = WorkloadConfig(trace=str(trace), format=trace_format)
    else:
        assert rate is not None and duration is not None
        if rate <= 0 or duration <= 0:
            raise InputError("--rate and --duration must be > 0")
        for name, v in (("--prompt-tokens", prompt_tokens), ("--output-tokens", output_tokens)):
            if v < 1:
                raise InputError(f"{name} must be >= 1")
        total = max(int(rate * duration * 2) + 100, 1)
        wl = WorkloadConfig(
            synthetic=SyntheticConfig(
                num_requests=total,
                arrival={"kind": "poisson", "rate": rate},  # type: ignore[arg-type]
                prompt=LengthConfig(kind="fixed", value=prompt_tokens),
                output=LengthConfig(kind="fixed", value=output_tokens),
            ),
            transforms=TransformConfig(end_s=duration),
        )
        total = round(rate * duration)
    tf = wl.transforms
    if rate_scale is not None:
        if rate_scale <= 0:
            raise InputError("must be > 0", "--rate-scale")
        tf = tf.model_copy(update={"rate_scale": rate_scale})
    if requests is not None:
        if requests < 1:
            raise InputError("must be >= 1", "--requests")
        tf = tf.model_copy(update={"first_n": requests})
    wl = wl.model_copy(update={"transforms": tf})
    first_n = wl.transforms.first_n
    if first_n is not None:
        total = first_n if total is None else min(total, first_n)
    s = sc_seed if seed is None else seed
    return build_workload(wl, s), slo, s, total


async def check_target(target: str) -> None:
    """Fail fast (one line, exit 2) when nothing answers at ``target``."""
    import aiohttp

    if not target.startswith(("http://", "https://")):
        raise InputError(f"--target must be an http:// or https:// URL, got {target!r}")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
            s.get(target.rstrip("/") + "/v1/models") as r,
        ):
            await r.read()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise InputError(f"cannot reach {target}: {e}") from None


def run_with_progress(requests: Iterator[Request], cfg: Any, total: int | None, quiet: bool) -> Any:
    """Run the bench with a live progress bar (sent, done, failed, in flight, req/s) and
    Ctrl-C stopping it cleanly with the results so far."""
    from fleetsched.bench import run_bench

    progress = Progress(
        TextColumn("[bold]bench[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.fields[total_text]} sent"),
        TextColumn("{task.fields[done]} done"),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TextColumn("{task.fields[inflight]} in flight"),
        TextColumn("{task.fields[rps]:.1f} req/s"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=True,
    )
    window: deque[tuple[float, int]] = deque(maxlen=12)

    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        task = progress.add_task(
            "bench", total=total, total_text="?" if total is None else str(total),
            done=0, failed=0, inflight=0, rps=0.0,
        )  # fmt: skip

        def update(p: Any) -> None:
            now = time.perf_counter()
            window.append((now, p.done))
            t_old, d_old = window[0]
            rps = (p.done - d_old) / (now - t_old) if now > t_old else 0.0
            progress.update(
                task, completed=p.sent, done=p.done, failed=p.failed, inflight=p.inflight,
                rps=rps,
            )  # fmt: skip

        try:
            return await run_bench(requests, cfg, on_progress=update, stop=stop)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    async def wrapped() -> Any:
        await check_target(cfg.target)
        return await main()

    with progress:
        return run_async(wrapped())


_SPEEDUP_HELP = "Trace seconds per wall second (default: the emulator's --speedup, else 1)."


@app.command(epilog=EXAMPLES)
def bench(
    target: Annotated[str, Opt(help="Base URL of the server, e.g. http://127.0.0.1:8000.")],
    trace: Annotated[Path | None, Opt(help="Replay this trace (any supported format).")] = None,
    trace_format: Annotated[str, Opt("--format", help="Trace format (default: detect).")] = "auto",
    rate: Annotated[float | None, Opt(help="Poisson arrivals at this rate (req/s).")] = None,
    duration: Annotated[float | None, Opt(help="Seconds of Poisson arrivals.")] = None,
    scenario: Annotated[Path | None, Opt("--scenario", "-s", help="A scenario's workload.")] = None,
    prompt_tokens: Annotated[int, Opt(help="Prompt length with --rate.")] = 256,
    output_tokens: Annotated[int, Opt(help="Output length with --rate.")] = 128,
    requests: Annotated[int | None, Opt(help="Only the first N requests.")] = None,
    rate_scale: Annotated[float | None, Opt(help="Multiply the arrival rate.")] = None,
    seed: Annotated[int | None, Opt(help="Seed of the workload and prompt contents.")] = None,
    model: Annotated[str | None, Opt(help="Model (default: the server's first).")] = None,
    endpoint: Annotated[str, Opt(help="completions (token-id prompts) or chat.")] = "completions",
    stream: Annotated[bool, Opt("--stream/--no-stream", help="Stream responses.")] = True,
    max_concurrency: Annotated[int | None, Opt(help="Cap on requests in flight.")] = None,
    pool_size: Annotated[int, Opt(help="Connections to the target (the pool bound).")] = 1024,
    speedup: Annotated[float | None, Opt(help=_SPEEDUP_HELP)] = None,
    timeout: Annotated[float, Opt(help="Seconds one request may take (wall).")] = 600.0,
    summary_json: Annotated[Path | None, Opt(help="Write the summary as JSON.")] = None,
    requests_out: Annotated[Path | None, Opt(help="Per-request rows (.csv or .parquet).")] = None,
    quiet: Annotated[
        bool, Opt("--quiet", "-q", help="Print nothing (write only the files asked for).")
    ] = False,
) -> None:
    """Send a workload (trace, Poisson or scenario) to an OpenAI-compatible server on its
    schedule and measure TTFT, ITL, TPOT and E2E per request on the client side."""
    from fleetsched.bench import BenchConfig, bench_summary, live_table, write_bench_records

    if endpoint not in ("completions", "chat"):
        raise InputError(f"--endpoint must be completions or chat, got {endpoint!r}")
    if max_concurrency is not None and max_concurrency < 1:
        raise InputError("--max-concurrency must be >= 1")
    if pool_size < 1 or timeout <= 0:
        raise InputError("--pool-size must be >= 1 and --timeout > 0")
    check_output(summary_json, "--summary-json")
    check_records_output(requests_out)
    reqs, slo, s, total = bench_workload(
        trace=trace, trace_format=trace_format, rate=rate, duration=duration, scenario=scenario,
        requests=requests, rate_scale=rate_scale, seed=seed, prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )  # fmt: skip
    cfg = BenchConfig(
        target=target, endpoint=endpoint, model=model, stream=stream,  # type: ignore[arg-type]
        max_concurrency=max_concurrency, pool_size=pool_size, timeout_s=timeout,
        time_scale=speedup, seed=s,
    )  # fmt: skip
    run = run_with_progress(reqs, cfg, total, quiet)
    summ = bench_summary(run, slo)
    if not quiet:
        title = f"bench {target}: {summ['requests']} requests sent"
        if run.interrupted:
            title += f" (interrupted, {run.not_sent} not sent)"
        console.print(Text(title, style="bold"))
        console.print(summary_table(summ, title=None))
        console.print(live_table(summ, title=None))
        console.print(
            Text(
                f"ran {run.wall_s:.1f} s wall at time scale {summ['bench']['time_scale']:g}, "
                f"{summ['chunks']:,} chunks"
            )
        )
    if summary_json is not None:
        summary_json.write_text(summary_to_json(summ))
    if requests_out is not None:
        write_bench_records(run, requests_out)
    if summ["failed"] and not quiet:
        errs = ", ".join(f"{k}: {v}" for k, v in summ["errors"].items())
        err_console.print(Text(f"warning: {summ['failed']} requests failed ({errs})"))
    if summ["requests"] and not summ["completed"]:
        raise typer.Exit(1)
