"""Check a scenario against the registries and catalogs before any work starts.

The pydantic models check types and ranges; :func:`scenario_problems` checks what they
cannot know: that each policy name is registered and its parameters fit its factory's
signature (and its own range checks), that GPUs and models are in the catalogs, that a
tensor-parallel group fits in a node and the model fits in memory, that prefill/decode
roles have a router that understands them, and that trace files exist. Every problem names
its scenario field, so :func:`fleetsched.core.config.load_scenario` can give its line.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetsched.core.config import (
    InstanceGroup,
    LlamaCppConfig,
    PoliciesConfig,
    Problem,
    Scenario,
    format_problem,
)
from fleetsched.errors import InputError
from fleetsched.perf import GPU, GPUS, build_step_model, get_gpu, get_model
from fleetsched.perf.cpu import CPUS, find_cpu
from fleetsched.perf.hardware import GiB
from fleetsched.perf.roofline import check_tp
from fleetsched.policies.engine import ADMISSION, ORDERING, PREEMPTION, RETENTION
from fleetsched.policies.params import build_policy, check_params
from fleetsched.policies.routing import ROUTERS
from fleetsched.sim.build import group_kv_blocks, group_precision, llamacpp_time_model
from fleetsched.workload import FORMATS, is_workflow_workload, load_trace, read_workflows

#: Scenario field under ``policies`` -> (registry, what the error calls it).
POLICY_KINDS: dict[str, tuple[dict[str, Callable[..., Any]], str]] = {
    "router": (ROUTERS, "router"),
    "admission": (ADMISSION, "admission policy"),
    "ordering": (ORDERING, "ordering policy"),
    "preemption": (PREEMPTION, "preemption policy"),
    "retention": (RETENTION, "retention policy"),
}


def _returns(factory: Callable[..., Any]) -> Any:
    """The class a factory builds (itself for a class, else its return annotation)."""
    if isinstance(factory, type):
        return factory
    return typing.get_type_hints(factory).get("return")


def role_routers() -> list[str]:
    """Routers that understand prefill/decode roles (they pick the decode instance)."""
    return [n for n, f in ROUTERS.items() if hasattr(_returns(f), "pick_decode")]


def _policy_problems(s: Scenario) -> list[Problem]:
    out: list[Problem] = []
    context = {"seed": s.seed, "slo_classes": dict(s.slo_classes)}
    for field, (registry, what) in POLICY_KINDS.items():
        ref = getattr(s.policies, field)
        base = ("policies", field)
        factory = registry.get(ref.name)
        if factory is None:
            known = ", ".join(sorted(registry))
            out.append(((*base, "name"), f"unknown {what} {ref.name!r} (known: {known})"))
            continue
        _, problems = check_params(factory, ref.params)
        out += [((*base, *loc), msg) for loc, msg in problems]
        if problems:
            continue
        try:  # the factory's own range checks (cheap: policies build their state lazily)
            build_policy(factory, what, ref.name, ref.params, context)
        except InputError as e:
            out.append(((*base, "params"), str(e)))
    roles = {g.role for g in s.cluster}
    if roles & {"prefill", "decode"} and "router" not in {loc[1] for loc, _ in out}:
        factory = ROUTERS[s.policies.router.name]
        if not hasattr(_returns(factory), "pick_decode"):
            out.append(
                (
                    ("policies", "router", "name"),
                    f"the cluster has prefill/decode roles but router {s.policies.router.name!r}"
                    f" does not route by role (routers that do: {', '.join(role_routers())})",
                )
            )
    if "prefill" in roles and roles == {"prefill"}:
        out.append((("cluster",), "prefill instances need a decode or mixed instance group"))
    if all(isinstance(g.engine, LlamaCppConfig) for g in s.cluster):
        defaults = PoliciesConfig()
        for field in ("admission", "ordering", "preemption"):
            if getattr(s.policies, field) != getattr(defaults, field):
                out.append(
                    (
                        ("policies", field),
                        f"llamacpp engines serve their queue in arrival order without "
                        f"admission or preemption policies: {field} would not be used",
                    )
                )
    return out


def _llamacpp_problems(base: tuple[str | int, ...], g: InstanceGroup) -> list[Problem]:
    """A llamacpp group: a catalogued model, a CPU or GPU device, whole requests, and a
    time model that builds (its profile matches, its threads fit the CPU)."""
    out: list[Problem] = []
    try:
        get_model(g.model)
    except InputError as e:
        out.append(((*base, "model"), e.message))
    if find_cpu(g.gpu) is None:
        try:
            get_gpu(g.gpu)
        except InputError:
            out.append(
                (
                    (*base, "gpu"),
                    f"unknown device {g.gpu!r}; known CPUs: {', '.join(CPUS)}; "
                    f"known GPUs: {', '.join(GPUS)}",
                )
            )
    if g.role != "mixed":
        out.append(((*base, "role"), "a llamacpp engine serves whole requests: use role mixed"))
    if out:
        return out
    assert isinstance(g.engine, LlamaCppConfig)
    try:
        llamacpp_time_model(g, g.engine)
    except InputError as e:
        field = ("profile",) if g.profile is not None else ("engine", "threads")
        out.append(((*base, *field), e.message if g.profile is None else str(e)))
    return out


def _group_problems(i: int, g: InstanceGroup) -> list[Problem]:
    base: tuple[str | int, ...] = ("cluster", i)
    if isinstance(g.engine, LlamaCppConfig):
        return _llamacpp_problems(base, g)
    out: list[Problem] = []
    for field, lookup in (("gpu", get_gpu), ("model", get_model)):
        try:
            lookup(getattr(g, field))
        except InputError as e:
            out.append(((*base, field), e.message))
    if out:
        return out
    gpu, model = get_gpu(g.gpu), get_model(g.model)
    if g.tp > gpu.gpus_per_node:
        msg = f"tp={g.tp} needs more GPUs than one {gpu.name} node has ({gpu.gpus_per_node})"
        return [((*base, "tp"), msg)]
    try:
        group_precision(g).check_gpu(gpu)
    except InputError as e:
        return [((*base, "precision", "activation_dtype"), e.message)]
    try:
        check_tp(model, g.tp)
        group_kv_blocks(g)
    except InputError as e:
        return [((*base, "tp"), e.message)]
    if g.profile is not None:
        try:
            build_step_model(g.gpu, g.model, g.tp, g.profile)
        except InputError as e:
            out.append(((*base, "profile"), str(e)))
    if g.offload is not None:
        out += _offload_problems(base, g, gpu)
    e = g.engine
    if e.context_switch == "fastswitch" and e.swap_group_tokens < e.block_tokens:
        msg = f"a block group must hold at least one block ({e.block_tokens} tokens)"
        out.append(((*base, "engine", "swap_group_tokens"), msg))
    if g.offload is not None and e.determinism.mode != "none":
        msg = "determinism modes are not modelled together with CPU offload"
        out.append(((*base, "engine", "determinism", "mode"), msg))
    return out


def _offload_problems(base: tuple[str | int, ...], g: InstanceGroup, gpu: GPU) -> list[Problem]:
    o = g.offload
    assert o is not None
    where = (*base, "offload")
    if not (o.host_mem_gb_s or gpu.host_mem_bw_bytes_s):
        return [((*where, "host_mem_gb_s"), f"no host is catalogued for {gpu.name}: set it")]
    if not (o.host_cpu_tflops or gpu.host_cpu_flops):
        return [((*where, "host_cpu_tflops"), f"no host is catalogued for {gpu.name}: set it")]
    share = gpu.host_mem_bytes / GiB
    if share and o.host_kv_gib > share:
        return [
            (
                (*where, "host_kv_gib"),
                f"{o.host_kv_gib:g} GiB is more than {gpu.name}'s host memory share "
                f"({share:g} GiB per GPU)",
            )
        ]
    return []


def _workload_problems(s: Scenario) -> list[Problem]:
    wl = s.workload
    if wl.format.lower() not in FORMATS:
        return [(("workload", "format"), f"unknown trace format (known: {', '.join(FORMATS)})")]
    if wl.trace is not None:
        if not Path(wl.trace).is_file():
            return [(("workload", "trace"), f"no such trace file: {wl.trace}")]
        try:  # the header (and the format, if auto) are checked now, rows later
            if is_workflow_workload(wl):
                read_workflows(wl.trace)
            else:
                load_trace(wl.trace, wl.format, generated_rate=wl.generated_rate, seed=s.seed)
        except InputError as e:
            return [(("workload", "trace"), str(e))]
    if wl.synthetic is not None:
        for part in ("prompt", "output"):
            path = getattr(wl.synthetic, part).path
            if path is not None and not Path(path).is_file():
                return [(("workload", "synthetic", part, "path"), f"no such file: {path}")]
    return []


def scenario_problems(s: Scenario, workload: bool = True) -> list[Problem]:
    """Everything wrong with ``s`` that its schema cannot see, each at its field path
    (``workload=False`` leaves the workload section out, for runs given their requests)."""
    out = _workload_problems(s) if workload else []
    for i, g in enumerate(s.cluster):
        out += _group_problems(i, g)
    return out + _policy_problems(s)


def check_scenario(s: Scenario, workload: bool = True) -> None:
    """Raise :class:`InputError` naming the field of the first problem of ``s``."""
    problems = scenario_problems(s, workload)
    if problems:
        raise InputError(format_problem(*problems[0], count=len(problems)))
