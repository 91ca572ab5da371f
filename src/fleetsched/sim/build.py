"""Build simulator instances from a scenario's cluster section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetsched.core.config import (
    EngineConfig,
    InstanceGroup,
    LlamaCppConfig,
    PoliciesConfig,
    PolicyRef,
    SLOClass,
)
from fleetsched.engine.context_switch import ContextSwitch, context_switch
from fleetsched.engine.defaults import resolve_engine_config
from fleetsched.engine.determinism import DeterminismCost
from fleetsched.engine.energy import EnergyMeter
from fleetsched.engine.instance import Instance
from fleetsched.engine.llamacpp import LlamaCppInstance
from fleetsched.errors import InputError
from fleetsched.perf import (
    KVCompression,
    Precision,
    build_step_model,
    default_activation_reserve_bytes,
    get_gpu,
    get_model,
    kv_capacity_blocks,
)
from fleetsched.perf.cpu import find_cpu
from fleetsched.perf.hardware import GiB
from fleetsched.perf.offload import HybridStepModel, host_attention
from fleetsched.perf.power import StepPower
from fleetsched.perf.roofline import RooflineModel, kv_bytes_per_token_per_gpu, kv_heads_per_gpu
from fleetsched.perf.step_model import StepTimeModel
from fleetsched.perf.ubatch import (
    CPURoofline,
    StepModelUbatches,
    UbatchTimeModel,
    load_llamacpp_profile,
)
from fleetsched.policies.engine import ADMISSION, ORDERING, PREEMPTION, RETENTION
from fleetsched.policies.engine import make as make_policy


def group_engine(g: InstanceGroup, where: str = "engine") -> EngineConfig:
    """``g``'s engine knobs with every unset one as vLLM sets it for the group's GPU and model."""
    assert isinstance(g.engine, EngineConfig), "a llamacpp group has no vLLM engine knobs"
    return resolve_engine_config(g.engine, get_gpu(g.gpu), get_model(g.model), where)


def group_precision(g: InstanceGroup) -> Precision:
    """The perf-level :class:`Precision` of ``g``'s ``precision`` section."""
    p = g.precision
    c = p.kv_compression
    return Precision(
        weight_dtype=p.weight_dtype,
        activation_dtype=p.activation_dtype,
        kv_dtype=p.kv_dtype,
        kv_dequant_overhead=p.kv_dequant_overhead,
        kv_compression=None if c is None else KVCompression(**c.model_dump()),
    )


def group_kv_blocks(g: InstanceGroup, e: EngineConfig | None = None) -> int:
    """KV-cache blocks of each instance of ``g``: its GPU blocks (:func:`group_gpu_kv_blocks`)
    plus, with CPU offload, the host blocks (:func:`group_host_kv_blocks`). ``e`` is ``g``'s
    resolved engine config (:func:`group_engine`), computed when not given."""
    e = e or group_engine(g)
    return group_gpu_kv_blocks(g, e) + group_host_kv_blocks(g)


def group_host_kv_blocks(g: InstanceGroup) -> int:
    """Blocks of KV cache ``g``'s ``offload.host_kv_gib`` holds (0 without offload)."""
    if g.offload is None:
        return 0
    per_block = group_kv_bytes_per_token(g) * g.engine.block_tokens
    return int(g.offload.host_kv_gib * GiB // per_block)


def group_step_model(g: InstanceGroup, e: EngineConfig | None = None) -> StepTimeModel:
    """The step-time model of ``g``'s instances: the GPU's (roofline or profile), wrapped in
    CPU attention over host KV when ``offload`` is set (``e`` as in :func:`group_kv_blocks`)."""
    inner = build_step_model(g.gpu, g.model, g.tp, g.profile, group_precision(g), **g.perf.knobs())
    o = g.offload
    if o is None:
        return inner
    gpu, model = get_gpu(g.gpu), get_model(g.model)
    host = host_attention(
        layers=model.num_layers,
        heads=model.num_heads // g.tp,
        kv_heads=kv_heads_per_gpu(model, g.tp),
        head_dim=model.head_dim,
        kv_bytes_per_token=group_kv_bytes_per_token(g),
        dtype_bytes=model.dtype_bytes,
        host_mem_bw_bytes_s=(o.host_mem_gb_s or 0) * 1e9 or gpu.host_mem_bw_bytes_s,
        host_cpu_flops=(o.host_cpu_tflops or 0) * 1e12 or gpu.host_cpu_flops,
        host_link_bw_bytes_s=gpu.host_link_bw_bytes_s,
        bandwidth_efficiency=o.bandwidth_efficiency,
    )
    gpu_tokens = group_gpu_kv_blocks(g, e or group_engine(g)) * g.engine.block_tokens
    return HybridStepModel(inner, gpu_tokens, host, o.overlap)


def group_context_switch(g: InstanceGroup) -> ContextSwitch | None:
    """The swap cost model of ``g``'s instances; None (bytes over the link, added to the step)
    for vLLM without a per-copy latency, the engine's original model."""
    e = g.engine
    if e.context_switch == "vllm" and not e.swap_copy_latency_s:
        return None
    return context_switch(
        e.context_switch,
        kv_bytes_per_token=group_kv_bytes_per_token(g),
        block_tokens=e.block_tokens,
        layers=get_model(g.model).num_layers,
        link_bytes_s=e.host_link_gbps * 1e9,
        copy_latency_s=e.swap_copy_latency_s,
        group_tokens=e.swap_group_tokens,
    )


def group_gpu_kv_blocks(g: InstanceGroup, e: EngineConfig | None = None) -> int:
    """KV-cache blocks on each instance's GPUs (vLLM's "# GPU blocks"): the engine's
    ``num_gpu_blocks`` if set, else what fits beside the weights and activations (``e`` as in
    :func:`group_kv_blocks`)."""
    e = e or group_engine(g)
    if e.num_gpu_blocks:
        return e.num_gpu_blocks
    model = get_model(g.model)
    reserve = default_activation_reserve_bytes(model, g.tp, e.max_num_batched_tokens)
    return kv_capacity_blocks(
        get_gpu(g.gpu),
        model,
        g.tp,
        e.gpu_memory_utilization,
        e.block_tokens,
        reserve,
        group_precision(g),
    )


def group_kv_bytes_per_token(g: InstanceGroup) -> float:
    """Bytes of KV one token of context holds on each GPU of ``g`` (what a swap or a KV
    transfer moves): at the group's KV dtype, times its compression's memory fraction."""
    q = group_precision(g)
    kv = kv_bytes_per_token_per_gpu(get_model(g.model), g.tp, q.kv_dtype)
    return kv if q.kv_compression is None else kv * q.kv_memory_fraction


def instance_factory(
    g: InstanceGroup,
    policies: PoliciesConfig,
    *,
    fast_forward: bool = True,
    slo_classes: dict[str, SLOClass] | None = None,
    seed: int = 0,
    where: str = "engine",
) -> Callable[[int, str], Instance | LlamaCppInstance]:
    """``make(index, name)`` -> a new engine of group ``g`` (the step model and KV size are
    computed once); engine policies get the scenario context (SLO classes, a per-instance
    seed) when their factories accept it. A ``llamacpp`` group makes llama-server models."""
    if isinstance(g.engine, LlamaCppConfig):
        return _llamacpp_factory(g, g.engine)
    gpu, model = get_gpu(g.gpu), get_model(g.model)
    e = group_engine(g, where)
    step_model = group_step_model(g, e)
    blocks = group_kv_blocks(g, e)
    power = StepPower(gpu, model, g.tp)
    switch = group_context_switch(g)
    kv_bytes = group_kv_bytes_per_token(g)
    det = e.determinism
    determinism = None
    if det.mode != "none":
        determinism = DeterminismCost(
            det.mode,
            step_model,
            batch_invariant_overhead=det.batch_invariant_overhead,
            window=det.window,
            group=det.group,
            mismatch_rate=det.mismatch_rate,
        )

    def make(i: int, name: str) -> Instance | LlamaCppInstance:
        ctx = {"slo_classes": slo_classes or {}, "seed": seed * 1_000_003 + i}

        def policy(registry: dict[str, Any], kind: str, ref: PolicyRef) -> Any:
            return make_policy(registry, kind, ref.name, ref.params, ctx)

        inst = Instance(
            i,
            blocks,
            step_model,
            e,
            name=name,
            model=model.name,
            gpu=gpu.name,
            role=g.role,
            kv_bytes_per_token=kv_bytes,
            host_link_bytes_s=e.host_link_gbps * 1e9,
            ordering=policy(ORDERING, "ordering", policies.ordering),
            admission=policy(ADMISSION, "admission", policies.admission),
            preemption=policy(PREEMPTION, "preemption", policies.preemption),
            fast_forward=fast_forward,
            context_switch=switch,
            determinism=determinism,
        )
        inst.meter = EnergyMeter(power)
        inst.retention = policy(RETENTION, "retention", policies.retention)
        if inst.retention is not None:
            inst.retention.bind(inst)
        return inst

    return make


def _llamacpp_factory(
    g: InstanceGroup, e: LlamaCppConfig
) -> Callable[[int, str], Instance | LlamaCppInstance]:
    time_model, model = llamacpp_time_model(g, e), get_model(g.model)

    def make(i: int, name: str) -> Instance | LlamaCppInstance:
        return LlamaCppInstance(i, time_model, e, model, name=name, device=g.gpu, role=g.role)

    return make


def build_instances(
    groups: list[InstanceGroup],
    policies: PoliciesConfig,
    *,
    fast_forward: bool = True,
    slo_classes: dict[str, SLOClass] | None = None,
    seed: int = 0,
) -> list[Instance | LlamaCppInstance]:
    """One engine per instance of each group, indexed in order. Engine knobs left unset
    take vLLM's values for the group's GPU and model (:mod:`fleetsched.engine.defaults`)."""
    instances: list[Instance | LlamaCppInstance] = []
    for gi, g in enumerate(groups):
        make = instance_factory(
            g,
            policies,
            fast_forward=fast_forward,
            slo_classes=slo_classes,
            seed=seed,
            where=f"cluster.{gi}.engine",
        )
        for j in range(g.count):
            instances.append(make(len(instances), f"{g.name}-{j}"))
    return instances


def device_name(name: str) -> str:
    """The catalog name of a CPU or GPU (aliases resolved), else the name in lower case."""
    cpu = find_cpu(name)
    if cpu is not None:
        return cpu.name
    try:
        return get_gpu(name).name
    except InputError:
        return name.strip().lower()


def llamacpp_time_model(g: InstanceGroup, e: LlamaCppConfig) -> UbatchTimeModel:
    """The ubatch time model of a llama.cpp group: its fitted profile, else a roofline of its
    CPU (or GPU) from the catalogs."""
    model = get_model(g.model)
    if g.profile is not None:
        prof = load_llamacpp_profile(g.profile)
        if get_model(prof.model).name != model.name:
            raise InputError(
                f"profile is for model {prof.model!r} but the instance group runs {g.model!r}",
                g.profile,
            )
        if device_name(prof.device) != device_name(g.gpu):
            raise InputError(
                f"profile is for device {prof.device!r} but the instance group runs {g.gpu!r}",
                g.profile,
            )
        if prof.threads != e.threads:
            raise InputError(
                f"profile is for threads={prof.threads} but the engine runs threads={e.threads}",
                g.profile,
            )
        return prof
    cpu = find_cpu(g.gpu)
    if cpu is not None:
        return CPURoofline(cpu, model, e.threads, weight_bits=e.weight_bits)
    return StepModelUbatches(RooflineModel(get_gpu(g.gpu), model, g.tp))
