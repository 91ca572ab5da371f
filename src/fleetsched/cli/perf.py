"""``fleetsched perf``: check the step-time model against measured kernel times."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from fleetsched.cli.app import app, console, err_console
from fleetsched.errors import InputError
from fleetsched.perf.calibration import CALIBRATED
from fleetsched.perf.hardware import get_gpu
from fleetsched.perf.published import PUBLISHED, modelled_s
from fleetsched.perf.vidur import (
    PROFILE_GPUS,
    KernelRows,
    abs_rel_error,
    fit_allreduce,
    fit_gpu,
    load_kernel_profiles,
    median_errors,
    modelled_elementwise_s,
    modelled_gemm_s,
)

perf_app = typer.Typer(
    help="The step-time model: check it against measured kernel times.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(perf_app, name="perf")

EXAMPLES = """
Examples:

  fleetsched perf check                                  # ../shared/profiles/vidur, summary rows

  fleetsched perf check --gpu H100-SXM --model Llama-2-70b-hf --tokens all

  fleetsched perf check --fit                            # also refit the calibrated knobs

  fleetsched perf published                              # published vLLM latencies vs model
"""

DEFAULT_TOKENS = "1,32,256,1024,4096"
Opt = typer.Option


def _tokens(text: str) -> list[int] | None:
    if text.strip().lower() == "all":
        return None
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        msg = f"--tokens: expected 'all' or integers separated by commas, got {text!r}"
        raise InputError(msg) from None
    if not values or min(values) < 1:
        raise InputError(f"--tokens: expected token counts >= 1, got {text!r}")
    return values


def _filter(rows: KernelRows, gpu: str | None, model: str | None) -> KernelRows:
    mask = np.ones(len(rows), dtype=bool)
    if gpu is not None:
        name = PROFILE_GPUS.get(gpu.strip().lower()) or get_gpu(gpu).name
        mask &= rows.gpu == name
    if model is not None:
        mask &= np.array([model.lower() in m.lower() for m in rows.model])
    if not mask.any():
        raise InputError(
            f"no profiled rows for gpu={gpu!r} model={model!r}; profiled: "
            + ", ".join(sorted({f"{g}/{m}" for g, m in zip(rows.gpu, rows.model, strict=True)}))
        )
    return rows.select(mask)


def rows_table(rows: KernelRows, modelled: np.ndarray, tokens: list[int] | None) -> Table:
    t = Table(
        title="linear layers (QKV, O, gate-up, down GEMMs) of one layer, per GPU",
        title_justify="left",
        header_style="bold",
    )
    for col in ("GPU", "model", "TP", "tokens"):
        t.add_column(col)
    for col in ("measured us", "modelled us", "error"):
        t.add_column(col, justify="right")
    order = np.lexsort((rows.tokens, rows.tp, rows.model, rows.gpu))
    for i in order:
        if tokens is not None and int(rows.tokens[i]) not in tokens:
            continue
        err = (modelled[i] - rows.gemm_s[i]) / rows.gemm_s[i]
        t.add_row(
            str(rows.gpu[i]),
            str(rows.model[i]),
            str(rows.tp[i]),
            f"{int(rows.tokens[i]):,}",
            f"{rows.gemm_s[i] * 1e6:,.1f}",
            f"{modelled[i] * 1e6:,.1f}",
            f"{err:+.1%}",
        )
    return t


def medians_table(rows: KernelRows, err: np.ndarray, elementwise_err: np.ndarray) -> Table:
    t = Table(
        title="median absolute error (linear layers; elementwise kernels for reference)",
        title_justify="left",
        header_style="bold",
    )
    for col in ("GPU", "model", "rows", "linear", "elementwise"):
        t.add_column(col, justify="left" if col in ("GPU", "model") else "right")
    lin = median_errors(rows, err, "gpu", "model")
    elem = median_errors(rows, elementwise_err, "gpu", "model")
    for (g, m), e in lin.items():
        n = int(np.sum((rows.gpu == g) & (rows.model == m)))
        t.add_row(g, m, f"{n:,}", f"{e:.1%}", f"{elem[(g, m)]:.1%}")
    for (g,), e in median_errors(rows, err, "gpu").items():
        n = int(np.sum(rows.gpu == g))
        el = median_errors(rows, elementwise_err, "gpu")[(g,)]
        t.add_row(f"[bold]{g}[/]", "all", f"{n:,}", f"{e:.1%}", f"{el:.1%}")
    t.add_row(
        "[bold]all[/]",
        "all",
        f"{len(rows):,}",
        f"[bold]{np.median(err):.1%}[/]",
        f"{np.median(elementwise_err):.1%}",
    )
    return t


def fit_table(rows: KernelRows, profiles: Path) -> Table:
    t = Table(title="refitted vs shipped knobs", title_justify="left", header_style="bold")
    t.add_column("GPU")
    t.add_column("knob")
    t.add_column("fitted", justify="right")
    t.add_column("shipped", justify="right")
    for device, name in PROFILE_GPUS.items():
        mask = rows.gpu == name
        if not mask.any():
            continue
        fitted = fit_gpu(rows.select(mask))
        ar = profiles / "network" / f"{device}_dgx" / "all_reduce.csv"
        if ar.is_file():
            fitted["allreduce_bandwidth_efficiency"] = fit_allreduce(profiles, device)
        for knob, value in fitted.items():
            t.add_row(name, knob, f"{value:.4g}", f"{getattr(CALIBRATED[name], knob):.4g}")
    return t


@perf_app.command(epilog=EXAMPLES)
def check(
    profiles: Annotated[
        Path, Opt(help="Vidur profile folder (compute/<gpu>/<org>/<model>/mlp.csv).")
    ] = Path("../shared/profiles/vidur"),
    gpu: Annotated[str | None, Opt(help="Only this GPU (catalog name or a100/h100/a40).")] = None,
    model: Annotated[str | None, Opt(help="Only profiled models whose name contains this.")] = None,
    tokens: Annotated[
        str, Opt(help="Token counts to list row by row ('all' for every profiled row).")
    ] = DEFAULT_TOKENS,
    fit: Annotated[bool, Opt(help="Also refit the calibrated knobs and compare.")] = False,
    max_median: Annotated[
        float, Opt(help="Fail (exit 1) if the overall median error exceeds this.")
    ] = 0.10,
    max_group_median: Annotated[
        float, Opt(help="Fail (exit 1) if a GPU/model's median error exceeds this.")
    ] = 0.20,
) -> None:
    """Compare the roofline's linear-layer time with Vidur's measured GEMM kernel times.

    Reads Vidur's per-operator profiles (Agrawal et al., MLSys 2024; microsoft/vidur) and, for
    every row (GPU, model shape, tensor parallelism, token count), prints the measured time of
    one layer's four GEMMs, the time the step-time model gives them and the error, then the
    median absolute error overall and per GPU/model.
    """
    wanted = _tokens(tokens)
    rows = _filter(load_kernel_profiles(profiles), gpu, model)
    modelled = modelled_gemm_s(rows)
    err = abs_rel_error(modelled, rows.gemm_s)
    elementwise_err = abs_rel_error(modelled_elementwise_s(rows), rows.elementwise_s)
    console.print(rows_table(rows, modelled, wanted))
    console.print(medians_table(rows, err, elementwise_err))
    if fit:
        with console.status("refitting (Nelder-Mead per GPU)..."):
            table = fit_table(rows, profiles)
        console.print(table)
    overall = float(np.median(err))
    worst_group, worst = max(median_errors(rows, err, "gpu", "model").items(), key=lambda x: x[1])
    console.print(
        f"median absolute error {overall:.1%} over {len(rows):,} rows (bound {max_median:.0%}); "
        f"worst GPU/model {'/'.join(worst_group)} {worst:.1%} (bound {max_group_median:.0%})",
        highlight=False,
    )
    if overall > max_median or worst > max_group_median:
        err_console.print("[bold red]error bounds exceeded[/]")
        raise typer.Exit(1)


@perf_app.command(epilog=EXAMPLES)
def published() -> None:
    """Published vLLM latencies (batch 1-2 decode ITL, vLLM's CI latency test, TTFT) next to
    what the calibrated step-time model gives for the same setup, and their ratio.
    Sources and setups: fleetsched.perf.published and docs/perf.md."""
    t = Table(title="published vLLM latencies vs the model", title_justify="left")
    for col in ("figure", "GPU", "model", "TP", "source", "published ms", "model ms", "ratio"):
        t.add_column(col, justify="right" if col.endswith(("ms", "ratio", "TP")) else "left")
    for e in PUBLISHED:
        what = {"itl": f"ITL, batch {e.batch}, context {e.context:,}", "ttft": "TTFT"}
        model_s = modelled_s(e)
        t.add_row(
            what.get(e.kind, f"e2e, batch {e.batch}, {e.prompt} + {e.output} tokens"),
            e.gpu,
            e.model,
            str(e.tp),
            e.source,
            f"{e.seconds * 1e3:,.2f}",
            f"{model_s * 1e3:,.2f}",
            f"{model_s / e.seconds:.2f}",
        )
    console.print(t)
