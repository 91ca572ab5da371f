"""``fleetsched calibrate``: measure a real engine and fit the profile ``simulate`` uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetsched.calibrate.fit import FitResult, Row
from fleetsched.cli.app import app, console, err_console
from fleetsched.errors import InputError
from fleetsched.perf.profile import FittedProfile

EXAMPLES = """
Examples:

  llama-server -m gemma-3-270m-q4_k_m.gguf --host 127.0.0.1 --port 8080 -c 8192 --parallel 4 -t 2

  fleetsched calibrate --target http://127.0.0.1:8080 -o gemma_cpu.yaml --threads 2

  fleetsched calibrate --target http://127.0.0.1:8080 -o quick.yaml --quick --repeats 1
  --measurements-out m.json

  fleetsched calibrate --from-measurements m.json -o refit.yaml     # refit, no server

  fleetsched emulate --gpu A10G --model Llama-3.1-8B --port 8000 &
  fleetsched calibrate --target http://127.0.0.1:8000 --engine vllm -o a10g.yaml --quick
"""

Opt = typer.Option


@app.command(epilog=EXAMPLES)
def calibrate(
    output: Annotated[Path, Opt("--output", "-o", help="Write the fitted profile here.")],
    target: Annotated[str | None, Opt(help="The engine's URL (127.0.0.1 only).")] = None,
    engine: Annotated[str, Opt(help="auto, llamacpp or vllm.")] = "auto",
    model: Annotated[str | None, Opt(help="Catalog model (default: from the GGUF name).")] = None,
    device: Annotated[
        str | None, Opt(help="CPU or GPU catalog name the server runs on (llama.cpp: default cpu).")
    ] = None,
    tp: Annotated[int | None, Opt(help="vLLM: the server's tensor parallelism.")] = None,
    threads: Annotated[int, Opt(help="The server's -t.")] = 2,
    swa_full: Annotated[bool, Opt("--swa-full", help="The server runs with --swa-full.")] = False,
    n_batch: Annotated[int, Opt(help="The server's -b.")] = 2048,
    n_ubatch: Annotated[int, Opt(help="The server's -ub.")] = 512,
    cache_ram: Annotated[int, Opt(help="The server's --cache-ram (MiB).")] = 8192,
    repeats: Annotated[int, Opt(help="Runs of the whole plan (noise estimate).")] = 3,
    quick: Annotated[bool, Opt("--quick", help="A short plan (about a minute).")] = False,
    measurements_out: Annotated[Path | None, Opt(help="Save the raw measurements (JSON).")] = None,
    from_measurements: Annotated[
        Path | None, Opt(help="Fit saved measurements instead of measuring.")
    ] = None,
) -> None:
    """Time a llama.cpp server from the client (prefill, decode at each concurrency, mixed
    steps, prefill after a cached prefix), fit a step-time profile knowing which engine steps
    each measurement spans, print residuals and noise, and write the profile YAML that
    ``simulate`` reads (``profile:`` of an instance group with ``engine: {kind: llamacpp}``).
    A vLLM-compatible server (vLLM, ``fleetsched emulate``) gets a plan of lone prefills and
    decode-only steps and a vLLM profile (``profile:`` of a vLLM instance group)."""
    from fleetsched.calibrate import run

    if (target is None) == (from_measurements is None):
        raise InputError("give exactly one of --target URL or --from-measurements FILE")
    if engine not in ("auto", "llamacpp", "vllm"):
        raise InputError(f"--engine must be auto, llamacpp or vllm, not {engine!r}")
    if from_measurements is not None:
        m = run.load_measurements(from_measurements)
    else:
        assert target is not None
        progress = Progress(
            TextColumn("[bold]measuring[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("experiments"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        with progress:
            task = progress.add_task("measure", total=None)
            m = run.measure(
                target,
                engine=engine,
                repeats=repeats,
                quick=quick,
                progress=lambda d, t: progress.update(task, completed=d, total=t),
            )
        if measurements_out is not None:
            run.save_measurements(m, measurements_out)
    if m.engine == "vllm":
        prof, overhead, vrows = run.calibrate_vllm(m, model=model, device=device, tp=tp)
        print_vllm_fit(prof, overhead, vrows)
        text = prof.to_yaml()
    else:
        fit, _ = run.calibrate(
            m,
            model=model,
            device=device or "cpu",
            threads=threads,
            swa_full=swa_full,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            cache_ram_mib=cache_ram,
        )
        print_fit(fit)
        text = fit.profile.to_yaml()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.print(f"wrote {output}")


def _rows_table(rows: list[Row]) -> Table:
    t = Table(title="measured vs fitted (means; noise = std / mean of the samples)",
              title_justify="left")  # fmt: skip
    for col, j in (("measurement", "left"), ("n", "right"), ("measured ms", "right"),
                   ("fitted ms", "right"), ("error", "right"), ("noise", "right")):  # fmt: skip
        t.add_column(col, justify=j)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(
            r.name if r.fitted else f"{r.name} [dim](check, not fitted)[/]",
            str(r.samples),
            f"{r.measured_s * 1e3:.1f}",
            f"{r.predicted_s * 1e3:.1f}",
            f"{r.error:+.1%}",
            f"{r.noise_cv:.1%}" if r.noise_cv == r.noise_cv else "-",
        )
    return t


def _summary(rows: list[Row]) -> str:
    errs = sorted(abs(r.error) for r in rows if r.fitted)
    mid, top = errs[len(errs) // 2], errs[-1]
    return f"fit: {len(errs)} measurements, median |error| {mid:.1%}, max {top:.1%}"


def _coef_table(title: str, coefficients: list[tuple[str, float, str]]) -> Table:
    """(name, value in ``unit``, unit) rows."""
    coef = Table(title=title, title_justify="left")
    coef.add_column("coefficient")
    coef.add_column("value", justify="right")
    for name, value, unit in coefficients:
        coef.add_row(name, f"{value:.3f} {unit}")
    return coef


def print_vllm_fit(p: FittedProfile, overhead_s: float, rows: list[Row]) -> None:
    console.print(
        _coef_table(
            f"profile: {p.model} on {p.gpu}, tp {p.tp}",
            [
                ("c0_s", p.c0_s * 1e3, "ms"),
                ("prefill_token_s", p.prefill_token_s * 1e6, "µs"),
                ("prefill_pair_s", p.prefill_pair_s * 1e9, "ns"),
                ("decode_token_s", p.decode_token_s * 1e6, "µs"),
                ("decode_ctx_token_s", p.decode_ctx_token_s * 1e9, "ns"),
                ("request overhead (not in the profile)", overhead_s * 1e3, "ms"),
            ],
        )
    )
    console.print(_rows_table(rows))
    console.print(_summary(rows))


def print_fit(fit: FitResult) -> None:
    p = fit.profile
    coef = _coef_table(
        f"profile: {p.model} on {p.device}, {p.threads} threads",
        [
            ("request_s", p.request_s * 1e3, "ms"),
            ("ubatch_s", p.ubatch_s * 1e3, "ms"),
            ("token_s", p.token_s * 1e3, "ms"),
            ("output_s", p.output_s * 1e3, "ms"),
            ("pair_s", p.pair_s * 1e6, "µs"),
            ("kv_read_s", p.kv_read_s * 1e6, "µs"),
            ("checkpoint_s", p.checkpoint_s * 1e3, "ms"),
        ],
    )
    for k, v in enumerate(p.small_ubatch_s, 1):
        coef.add_row(f"ubatch of {k} token{'s' if k > 1 else ''}", f"{v * 1e3:.2f} ms")
    console.print(coef)
    console.print(_rows_table(fit.rows))
    console.print(
        f"{_summary(fit.rows)}; median noise {p.noise_cv or 0:.1%}; {fit.iterations} iterations"
    )
    ok = fit.cache_checked - len(fit.cache_mismatches)
    console.print(
        f"prompt-cache reuse: the engine model matches the server's cache_n on "
        f"{ok}/{fit.cache_checked} requests"
    )
    for row, model, server in fit.cache_mismatches[:10]:
        console.print(f"  {row}: model reused {model} tokens, server {server}", highlight=False)


__all__ = ["calibrate"]
