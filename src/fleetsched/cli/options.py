"""Scenario loading and command-line overrides shared by simulate, compare and sweep."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from fleetsched.core.config import PolicyRef, Scenario, load_scenario, parse_scenario
from fleetsched.errors import InputError

# Options shared by simulate, compare and the other scenario commands.
ScenarioOpt = Annotated[Path | None, typer.Option("--scenario", "-s", help="Scenario YAML file.")]
TraceOpt = Annotated[Path | None, typer.Option(help="Replay this trace (any supported format).")]
FormatOpt = Annotated[str, typer.Option("--format", help="Trace format (default: detect).")]
InstancesOpt = Annotated[int | None, typer.Option(help="Number of instances.")]
GpuOpt = Annotated[str | None, typer.Option(help="GPU name, e.g. H100-SXM.")]
ModelOpt = Annotated[str | None, typer.Option(help="Model name, e.g. Llama-3.1-8B.")]
RateScaleOpt = Annotated[float | None, typer.Option(help="Multiply the arrival rate.")]
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
    Path | None, typer.Option(help="Also write an HTML report (needs fleetsched[report]).")
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


def default_scenario() -> Scenario:
    text = resources.files("fleetsched.data").joinpath("default_scenario.yaml").read_text()
    return parse_scenario(text, "<default scenario>")


def resolve_scenario(
    scenario: Path | None,
    *,
    trace: Path | None = None,
    trace_format: str = "auto",
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
) -> Scenario:
    """The scenario file (or the embedded default) with command-line overrides applied."""
    s = load_scenario(scenario) if scenario is not None else default_scenario()
    wl = s.workload
    if trace is not None:
        if not trace.exists():
            raise InputError("no such trace file", str(trace))
        wl = wl.model_copy(update={"trace": str(trace), "format": trace_format, "synthetic": None})
    tf = wl.transforms
    if rate_scale is not None:
        if rate_scale <= 0:
            raise InputError("--rate-scale must be > 0")
        tf = tf.model_copy(update={"rate_scale": rate_scale})
    if requests is not None:
        if requests < 1:
            raise InputError("--requests must be >= 1")
        tf = tf.model_copy(update={"first_n": requests})
    wl = wl.model_copy(update={"transforms": tf})
    cluster = list(s.cluster)
    group_updates = {k: v for k, v in (("gpu", gpu), ("model", model), ("tp", tp)) if v is not None}
    if instances is not None:
        if instances < 1:
            raise InputError("--instances must be >= 1")
        if len(cluster) != 1:
            raise InputError("--instances applies to a cluster of one group; edit the scenario")
        group_updates["count"] = instances
    if tp is not None and tp < 1:
        raise InputError("--tp must be >= 1")
    cluster = [g.model_copy(update=group_updates) for g in cluster]
    pol = s.policies
    for field, name in (
        ("router", router),
        ("admission", admission),
        ("ordering", ordering),
        ("preemption", preemption),
    ):
        if name is not None:
            pol = pol.model_copy(update={field: PolicyRef(name=name)})
    update: dict[str, object] = {"workload": wl, "cluster": cluster, "policies": pol}
    if seed is not None:
        update["seed"] = seed
    if trace is not None:
        update["name"] = trace.stem
    # Re-validate the whole scenario so overrides get the same checks as the file.
    return Scenario.model_validate(s.model_copy(update=update).model_dump())
