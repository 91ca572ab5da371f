"""Scenario loading and command-line overrides shared by simulate, compare and sweep.

Every override is a dotted scenario path set with :func:`~fleetsched.core.config.apply_overrides`;
the result is then checked (:func:`~fleetsched.sim.check.scenario_problems`) before any work.
A problem in a value a flag set names the flag; one in the scenario file names its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml

from fleetsched.core.config import (
    EngineConfig,
    Scenario,
    apply_overrides,
    format_problem,
    load_scenario,
    parse_scenario,
    read_text,
)
from fleetsched.errors import InputError
from fleetsched.metrics.io import check_records_path
from fleetsched.perf import GPUS, MODELS
from fleetsched.policies.engine import ADMISSION, ORDERING, PREEMPTION
from fleetsched.policies.routing import ROUTERS
from fleetsched.sim.check import scenario_problems
from fleetsched.workload import FORMATS


def _choices(registry: Mapping[str, object]) -> str:
    return ", ".join(registry)


def _engine_default(field: str) -> str:
    default = EngineConfig.model_fields[field].default
    return f"scenario's; default {'auto' if default is None else default}"


# Options shared by simulate, compare and the other scenario commands.
ScenarioOpt = Annotated[Path | None, typer.Option("--scenario", "-s", help="Scenario YAML file.")]
TraceOpt = Annotated[Path | None, typer.Option(help="Replay this trace (any supported format).")]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help=f"Trace format: {', '.join(FORMATS)}.")
]
GeneratedRateOpt = Annotated[
    float | None,
    typer.Option(help="Arrival rate (req/s) given to length-only traces (default 4)."),
]
InstancesOpt = Annotated[int | None, typer.Option(help="Number of instances.")]
GpuOpt = Annotated[str | None, typer.Option(help=f"GPU: {_choices(GPUS)}.")]
ModelOpt = Annotated[str | None, typer.Option(help=f"Model: {_choices(MODELS)}.")]
TpOpt = Annotated[int | None, typer.Option(help="Tensor-parallel degree (GPUs per instance).")]
RouterOpt = Annotated[str | None, typer.Option(help=f"Router: {_choices(ROUTERS)}.")]
AdmissionOpt = Annotated[str | None, typer.Option(help=f"Admission: {_choices(ADMISSION)}.")]
OrderingOpt = Annotated[str | None, typer.Option(help=f"Queue order: {_choices(ORDERING)}.")]
PreemptionOpt = Annotated[
    str | None, typer.Option(help=f"Preemption victim: {_choices(PREEMPTION)}.")
]
RateScaleOpt = Annotated[
    float | None,
    typer.Option(help="Multiply the arrival rate (times the scenario's transforms.rate_scale)."),
]
RequestsOpt = Annotated[int | None, typer.Option(help="Only the first N requests.")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed.")]
SampleIntervalOpt = Annotated[
    float | None,
    typer.Option(
        "--sample-interval",
        help="Sample every instance's queue, running batch and KV use every this many"
        " simulated seconds (default 0.5 with --report or --timeseries-out, else off).",
    ),
]
ReportOpt = Annotated[
    Path | None, typer.Option(help="Also write an HTML report (needs fleetsched\\[report]).")
]

#: Sampling interval (simulated seconds) when a report or a time series is asked for.
DEFAULT_SAMPLE_INTERVAL_S = 0.5


def sample_interval(given: float | None, wanted: bool) -> float | None:
    """The sampling interval to use: the one given, else the default when a report or a time
    series needs it, else None (no sampling). Checked before any work starts."""
    from fleetsched.errors import InputError

    if given is not None and not given > 0:
        raise InputError(f"--sample-interval must be > 0, got {given}")
    if given is not None:
        return given
    return DEFAULT_SAMPLE_INTERVAL_S if wanted else None


# Engine knobs under vLLM's flag names; each sets the EngineConfig field of the same meaning
# in every instance group.
MaxNumSeqsOpt = Annotated[
    int | None,
    typer.Option(help=f"Most requests in a batch ({_engine_default('max_num_seqs')})."),
]
MaxNumBatchedTokensOpt = Annotated[
    int | None,
    typer.Option(help=f"Token budget of one step ({_engine_default('max_num_batched_tokens')})."),
]
GpuMemoryUtilizationOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Share of GPU memory for weights + KV ({_engine_default('gpu_memory_utilization')})."
    ),
]
BlockSizeOpt = Annotated[
    int | None,
    typer.Option(help=f"Tokens per KV block ({_engine_default('block_tokens')})."),
]
PrefixCachingOpt = Annotated[
    bool | None,
    typer.Option(
        "--prefix-caching/--no-prefix-caching",
        help="Automatic prefix caching (scenario's; default on).",
        show_default=False,
    ),
]
PreemptionModeOpt = Annotated[
    Literal["recompute", "swap"] | None,
    typer.Option(help="recompute or swap (scenario's; default recompute)."),
]

#: EngineConfig field -> command-line flag (vLLM's names).
ENGINE_FLAGS: dict[str, str] = {
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "block_tokens": "--block-size",
    "enable_prefix_caching": "--prefix-caching",
    "preemption_mode": "--preemption-mode",
}


def engine_flags(
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    gpu_memory_utilization: float | None = None,
    block_size: int | None = None,
    prefix_caching: bool | None = None,
    preemption_mode: str | None = None,
) -> dict[str, Any]:
    """EngineConfig fields set on the command line (the others are left out)."""
    values = {
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": max_num_batched_tokens,
        "gpu_memory_utilization": gpu_memory_utilization,
        "block_tokens": block_size,
        "enable_prefix_caching": prefix_caching,
        "preemption_mode": preemption_mode,
    }
    return {k: v for k, v in values.items() if v is not None}


def default_scenario() -> Scenario:
    text = resources.files("fleetsched.data").joinpath("default_scenario.yaml").read_text()
    return parse_scenario(text, "<default scenario>")


def check_output(path: Path | None, flag: str) -> None:
    """Fail now, not after the run, if ``path`` cannot be written (parents are created)."""
    if path is None:
        return
    existed = path.exists()
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write {path}: {ancestor} is not a directory", flag)
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}", flag) from None
    if not existed:
        path.unlink()


def check_records_output(path: Path | None, flag: str = "--requests-out") -> None:
    """:func:`check_output` plus the Parquet dependency when the path ends in ``.parquet``."""
    if path is None:
        return
    check_output(path, flag)
    try:
        check_records_path(path)
    except InputError as e:
        raise InputError(e.message, flag) from None


def _owner(loc: tuple[str | int, ...], flags: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The flag that set the field at ``loc`` (or a parent of it), if any."""
    key = tuple(str(p) for p in loc)
    for flag, paths in reversed(flags):
        for path in paths:
            p = tuple(path.split("."))
            if key[: len(p)] == p:
                return flag
    return None


def resolve_scenario(
    scenario: Path | None,
    *,
    trace: Path | None = None,
    trace_format: str | None = None,
    generated_rate: float | None = None,
    instances: int | None = None,
    gpu: str | None = None,
    model: str | None = None,
    tp: int | None = None,
    router: str | None = None,
    admission: str | None = None,
    ordering: str | None = None,
    preemption: str | None = None,
    rate_scale: float | None = None,
    requests: int | None = None,
    seed: int | None = None,
    engine: Mapping[str, Any] | None = None,
) -> Scenario:
    """The scenario file (or the embedded default) with command-line overrides applied and
    checked against the registries and catalogs."""
    if scenario is not None:
        s = load_scenario(scenario)
        source: tuple[str, Any] | None = (
            str(scenario),
            yaml.compose(read_text(scenario, "scenario")),
        )
    else:
        s, source = default_scenario(), None
    groups = range(len(s.cluster))
    flags: list[tuple[str, dict[str, Any]]] = []

    def flag(name: str, value: Any, *paths: str) -> None:
        if value is not None:
            flags.append((name, dict.fromkeys(paths, value)))

    if trace is not None:  # a new file: its format is detected unless --format names it
        paths = {"workload.synthetic": None, "workload.trace": str(trace), "name": trace.stem}
        flags.append(("--trace", {**paths, "workload.format": "auto"}))
    flag("--format", trace_format, "workload.format")
    flag("--generated-rate", generated_rate, "workload.generated_rate")
    if instances is not None and len(s.cluster) != 1:
        raise InputError("applies to a cluster of one group; edit the scenario", "--instances")
    flag("--instances", instances, "cluster.0.count")
    for name, value, field in (
        ("--gpu", gpu, "gpu"),
        ("--model", model, "model"),
        ("--tp", tp, "tp"),
    ):
        flag(name, value, *(f"cluster.{i}.{field}" for i in groups))
    for field, value in (engine or {}).items():
        flag(
            ENGINE_FLAGS.get(field, field), value, *(f"cluster.{i}.engine.{field}" for i in groups)
        )
    for kind, name in (
        ("router", router),
        ("admission", admission),
        ("ordering", ordering),
        ("preemption", preemption),
    ):
        flag(f"--{kind}", name, f"policies.{kind}.name")
    if rate_scale is not None:
        scaled = s.workload.transforms.rate_scale * rate_scale if rate_scale > 0 else rate_scale
        flag("--rate-scale", scaled, "workload.transforms.rate_scale")
    flag("--requests", requests, "workload.transforms.first_n")
    flag("--seed", seed, "seed")
    for name, overrides in flags:
        try:
            s = apply_overrides(s, overrides)
        except InputError as e:
            raise InputError(e.message, name) from None
    problems = scenario_problems(s)
    if problems:
        loc, msg = problems[0]
        owner = _owner(loc, flags)
        if owner is not None:
            raise InputError(msg, owner)
        raise InputError(format_problem(loc, msg, *(source or (None, None)), len(problems)))
    return s
