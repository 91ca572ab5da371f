"""``fleetsched trace``: inspect, synthesize and convert request traces."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from fleetsched.cli.app import app, console, err_console
from fleetsched.cli.options import check_output
from fleetsched.core.config import (
    LengthConfig,
    SyntheticConfig,
    TenantConfig,
    TransformConfig,
    format_validation_error,
)
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.workload import (
    FORMATS,
    apply_transforms,
    generate,
    load_trace,
    trace_stats,
    write_jsonl,
)

trace_app = typer.Typer(
    help="Inspect, synthesize and convert request traces (native JSONL, Azure, Mooncake, "
    "Vidur, BurstGPT).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(trace_app, name="trace")

_FORMAT_HELP = f"Trace format: {', '.join(FORMATS)} (auto detects it from the first line)."


# ------------------------------------------------------------------------------------ info


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def stats_table(stats: dict[str, Any], title: str) -> Table:
    """A rich table of :func:`~fleetsched.workload.trace_stats` output."""
    t = Table(title=Text(title), title_justify="left", show_header=True, header_style="bold")
    t.add_column("", style="bold")
    t.add_column("mean", justify="right")
    t.add_column("p50", justify="right")
    t.add_column("p90", justify="right")
    t.add_column("p99", justify="right")
    t.add_column("max", justify="right")
    for key, label in (("prompt_tokens", "prompt tokens"), ("output_tokens", "output tokens")):
        s = stats.get(key)
        if s:
            t.add_row(label, *(_fmt(s[k]) for k in ("mean", "p50", "p90", "p99", "max")))
    return t


def _summary_table(stats: dict[str, Any]) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    ratio = stats.get("prefix_sharing_ratio")
    rows = [
        ("requests", _fmt(stats["rows"])),
        ("duration", f"{_fmt(stats.get('duration_s'))} s"),
        ("mean rate", f"{_fmt(stats.get('mean_rate'), 2)} req/s"),
        ("prefix sharing", "-" if ratio is None else f"{ratio:.1%} of prompt tokens"),
        (
            "hash block",
            _fmt(stats.get("hash_block_tokens")) + " tokens"
            if stats.get("hash_block_tokens")
            else "-",
        ),
        ("tenants", _fmt(stats.get("tenants"))),
        ("models", _fmt(stats.get("models"))),
        ("sessions", _fmt(stats.get("sessions"))),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


@trace_app.command(
    "info",
    epilog="Example: [bold]fleetsched trace info "
    "../shared/traces/mooncake_fast25/conversation_trace.jsonl[/]  ·  add [bold]--json[/] "
    "for machine-readable output",
)
def info(
    file: Annotated[Path, typer.Argument(help="Trace file (any supported format).")],
    format: Annotated[str, typer.Option("--format", "-f", help=_FORMAT_HELP)] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    generated_rate: Annotated[
        float, typer.Option(help="Arrival rate (req/s) given to length-only traces.")
    ] = 4.0,
    seed: Annotated[int, typer.Option(help="Seed for generated arrivals.")] = 0,
) -> None:
    """Print summary statistics of a trace.

    Size, duration, mean rate, prompt/output length percentiles, and the share of prompt
    tokens in prefix blocks already seen earlier in the trace (when it has block hashes).
    """
    _check_rate(generated_rate, "--generated-rate")
    t0 = time.perf_counter()
    stats = trace_stats(load_trace(file, format, generated_rate=generated_rate, seed=seed))
    if as_json:
        print(json.dumps({"file": str(file), **stats}, indent=2))
        return
    if stats["rows"] == 0:  # pragma: no cover - loaders reject traces without rows
        console.print(Text(f"{file}: no requests"))
        return
    console.print(_summary_table(stats))
    console.print(stats_table(stats, f"{file.name} ({time.perf_counter() - t0:.2f} s)"))


# ----------------------------------------------------------------------------------- synth


def _check_rate(v: float, name: str) -> None:
    if not v > 0:
        raise InputError(f"{name} must be > 0, got {v}")


def _validated_at(data: dict[str, Any], prefix: tuple[str, ...], source: str, text: str):
    """Validate ``data`` as a SyntheticConfig nested under ``prefix`` keys, reporting errors
    with the YAML line of the offending field."""
    model: type[BaseModel] = SyntheticConfig
    for key in reversed(prefix):
        model = create_model("_Wrap", __config__=ConfigDict(extra="ignore"), **{key: (model, ...)})
    try:
        obj: Any = model.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(e, source, yaml.compose(text))) from None
    for key in prefix:
        obj = getattr(obj, key)
    return obj


def load_synthetic_config(path: Path) -> SyntheticConfig:
    """Read a SyntheticConfig from YAML: a bare mapping, or one under ``synthetic:`` or
    ``workload: synthetic:`` (so a scenario file works too)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"cannot read config: {e.strerror}", str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", where) from None
    if data is None:
        return SyntheticConfig()
    if not isinstance(data, dict):
        raise InputError("a synthetic workload config must be a YAML mapping", f"{path}:1")
    if isinstance(data.get("workload"), dict) and "synthetic" in data["workload"]:
        prefix: tuple[str, ...] = ("workload", "synthetic")
    elif "synthetic" in data:
        prefix = ("synthetic",)
    else:
        prefix = ()
    return _validated_at(data, prefix, str(path), text)


_OPTION_OF = {
    "num_requests": "--requests",
    "arrival.rate": "--rate",
    "arrival.kind": "--arrival",
    "arrival.cv": "--cv",
    "prompt.mean": "--prompt-mean",
    "output.mean": "--output-mean",
    "sessions.turns_mean": "--turns",
    "sessions.think_time_s": "--think-time",
    "system_prompt_tokens": "--system-prompt-tokens",
    "num_system_prompts": "--system-prompts",
}


def synthetic_config(
    base: SyntheticConfig,
    *,
    requests: int | None = None,
    rate: float | None = None,
    arrival: str | None = None,
    cv: float | None = None,
    prompt_mean: float | None = None,
    output_mean: float | None = None,
    turns: float | None = None,
    think_time: float | None = None,
    system_prompt_tokens: int | None = None,
    system_prompts: int | None = None,
    tenants: int | None = None,
    model: str | None = None,
) -> SyntheticConfig:
    """``base`` with the command-line overrides that were given (None = keep)."""
    d = base.model_dump()
    if requests is not None:
        d["num_requests"] = requests
    for key, v in (("kind", arrival), ("cv", cv)):
        if v is not None:
            d["arrival"][key] = v
    for key, mean in (("prompt", prompt_mean), ("output", output_mean)):
        if mean is not None:
            old = LengthConfig.model_validate(d[key])
            sigma = old.sigma if old.kind == "lognormal" else 0.8
            d[key] = {"kind": "lognormal", "mean": mean, "sigma": sigma, "max": old.max}
    if turns is not None:
        d["sessions"]["turns_mean"] = turns
    if rate is not None:  # requests/s; a session of T turns (mean) brings T requests
        turns_mean = d["sessions"]["turns_mean"]
        d["arrival"]["rate"] = rate / turns_mean if rate > 0 and turns_mean >= 1 else rate
    if think_time is not None:
        d["sessions"]["think_time_s"] = think_time
    if system_prompt_tokens is not None:
        d["system_prompt_tokens"] = system_prompt_tokens
    if system_prompts is not None:
        d["num_system_prompts"] = system_prompts
    if tenants is not None:
        if tenants < 1:
            raise InputError(f"--tenants must be at least 1, got {tenants}")
        d["tenants"] = [TenantConfig(name=f"tenant{i}").model_dump() for i in range(tenants)]
    if model is not None:
        d["model"] = model
    try:
        return SyntheticConfig.model_validate(d)
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{err['msg']} ({path})", _OPTION_OF.get(path, "options")) from None


def _with_progress(stream: Iterable[Request], total: int | None, label: str) -> Iterator[Request]:
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    else:
        columns += [TextColumn("{task.completed:,} requests")]
    columns.append(TimeElapsedColumn())
    live = err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=not live) as progress:
        task = progress.add_task(label, total=total)
        n = 0
        for n, r in enumerate(stream, 1):
            yield r
            if n & 1023 == 0:
                progress.update(task, completed=n)
        progress.update(task, completed=n)


@trace_app.command(
    "synth",
    epilog="Example: [bold]fleetsched trace synth --requests 5000 --rate 8 --arrival gamma "
    "--cv 2 --turns 3 --system-prompt-tokens 512 --tenants 2 -o chat.jsonl[/]  ·  or "
    "[bold]fleetsched trace synth --config synthetic.yaml -o chat.jsonl[/]",
)
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output native JSONL file.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML SyntheticConfig (options below override its fields)."
        ),
    ] = None,
    requests: Annotated[int | None, typer.Option(help="Number of requests (default 1000).")] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Mean request rate, per second (default 4); sessions of --turns T turns "
            "start at rate / T per second."
        ),
    ] = None,
    arrival: Annotated[
        str | None,
        typer.Option(help="Arrival process: poisson, gamma or bursty (default poisson)."),
    ] = None,
    cv: Annotated[
        float | None, typer.Option(help="Gamma: coefficient of variation of the gaps (default 1).")
    ] = None,
    prompt_mean: Annotated[
        float | None, typer.Option(help="Mean user message tokens (lognormal) (default 1000).")
    ] = None,
    output_mean: Annotated[
        float | None, typer.Option(help="Mean output tokens (lognormal) (default 250).")
    ] = None,
    turns: Annotated[float | None, typer.Option(help="Mean turns per session (default 1).")] = None,
    think_time: Annotated[
        float | None, typer.Option(help="Mean think time between turns, s (default 5).")
    ] = None,
    system_prompt_tokens: Annotated[
        int | None, typer.Option(help="Tokens of the shared system prompt (default 0).")
    ] = None,
    system_prompts: Annotated[
        int | None, typer.Option(help="Number of distinct system prompts (default 1).")
    ] = None,
    tenants: Annotated[
        int | None, typer.Option(help="Number of equally weighted tenants (default 1).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name put on every request.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate a synthetic workload and write it as native JSONL.

    Arrivals (poisson, gamma, bursty), lognormal lengths, multi-turn sessions whose later
    turns extend the earlier prompt, shared system prompts and several tenants.
    """
    check_output(out, "--out")
    base = load_synthetic_config(config) if config is not None else SyntheticConfig()
    cfg = synthetic_config(
        base,
        requests=requests,
        rate=rate,
        arrival=arrival,
        cv=cv,
        prompt_mean=prompt_mean,
        output_mean=output_mean,
        turns=turns,
        think_time=think_time,
        system_prompt_tokens=system_prompt_tokens,
        system_prompts=system_prompts,
        tenants=tenants,
        model=model,
    )
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    t0 = time.perf_counter()
    n = write_jsonl(_with_progress(generate(cfg, seed), cfg.num_requests, "synthesizing"), out)
    err_console.print(Text(f"wrote {n:,} requests to {out} in {time.perf_counter() - t0:.1f} s"))


# --------------------------------------------------------------------------------- convert


@trace_app.command(
    "convert",
    epilog="Example: [bold]fleetsched trace convert "
    "../shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv --start 600 --end 1200 "
    "--rate-scale 2 -o azure_10min_2x.jsonl[/]",
)
def convert(
    src: Annotated[Path, typer.Argument(help="Input trace (any supported format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output native JSONL file.")],
    format: Annotated[str, typer.Option("--format", "-f", help=_FORMAT_HELP)] = "auto",
    generated_rate: Annotated[
        float, typer.Option(help="Arrival rate (req/s) given to length-only traces.")
    ] = 4.0,
    rate_scale: Annotated[
        float, typer.Option(help="Multiply the request rate (divides arrival times).")
    ] = 1.0,
    start: Annotated[
        float | None, typer.Option(help="Keep arrivals at or after this time (s); shifted to 0.")
    ] = None,
    end: Annotated[float | None, typer.Option(help="Keep arrivals before this time (s).")] = None,
    first_n: Annotated[int | None, typer.Option(help="Keep only the first N requests.")] = None,
    sample: Annotated[
        float | None, typer.Option(help="Keep each request with this probability.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for generated arrivals and --sample.")] = 0,
) -> None:
    """Convert a trace to native JSONL.

    Optionally cut a time window, rescale the rate, sample or truncate it. Ids are
    renumbered 0..N-1.
    """
    _check_rate(generated_rate, "--generated-rate")
    check_output(out, "--out")
    try:
        tcfg = TransformConfig(
            rate_scale=rate_scale, start_s=start, end_s=end, first_n=first_n, sample=sample
        )
    except ValidationError as e:
        err = e.errors()[0]
        names = {
            "rate_scale": "--rate-scale",
            "start_s": "--start",
            "end_s": "--end",
            "first_n": "--first-n",
            "sample": "--sample",
        }
        opt = names.get(str(err["loc"][0]), "options") if err["loc"] else "options"
        raise InputError(err["msg"], opt) from None
    stream = apply_transforms(
        load_trace(src, format, generated_rate=generated_rate, seed=seed), tcfg, seed
    )
    t0 = time.perf_counter()
    n = write_jsonl(_with_progress(stream, first_n, "converting"), out)
    if n == 0:
        out.unlink()
        opts = (("--start", start), ("--end", end), ("--sample", sample))
        given = " ".join(f"{k} {v:g}" for k, v in opts if v is not None)
        raise InputError(f"{given} keeps none of its requests; nothing written", str(src))
    err_console.print(Text(f"wrote {n:,} requests to {out} in {time.perf_counter() - t0:.1f} s"))
