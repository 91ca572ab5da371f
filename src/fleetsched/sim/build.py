"""Build simulator instances from a scenario's cluster section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetsched.core.config import (
    EngineConfig,
    InstanceGroup,
    PoliciesConfig,
    PolicyRef,
    SLOClass,
)
from fleetsched.engine.defaults import resolve_engine_config
from fleetsched.engine.instance import Instance
from fleetsched.perf import (
    build_step_model,
    default_activation_reserve_bytes,
    get_gpu,
    get_model,
    kv_capacity_blocks,
)
from fleetsched.perf.roofline import kv_bytes_per_token_per_gpu
from fleetsched.policies.engine import ADMISSION, ORDERING, PREEMPTION
from fleetsched.policies.engine import make as make_policy


def group_engine(g: InstanceGroup, where: str = "engine") -> EngineConfig:
    """``g``'s engine knobs with every unset one as vLLM sets it for the group's GPU and model."""
    return resolve_engine_config(g.engine, get_gpu(g.gpu), get_model(g.model), where)


def group_kv_blocks(g: InstanceGroup, e: EngineConfig | None = None) -> int:
    """KV-cache blocks of each instance of ``g`` (vLLM's "# GPU blocks"): the engine's
    ``num_gpu_blocks`` if set, else what fits beside the weights and activations. ``e`` is
    ``g``'s resolved engine config (:func:`group_engine`), computed when not given."""
    e = e or group_engine(g)
    if e.num_gpu_blocks:
        return e.num_gpu_blocks
    model = get_model(g.model)
    reserve = default_activation_reserve_bytes(model, g.tp, e.max_num_batched_tokens)
    return kv_capacity_blocks(
        get_gpu(g.gpu), model, g.tp, e.gpu_memory_utilization, e.block_tokens, reserve
    )


def instance_factory(
    g: InstanceGroup,
    policies: PoliciesConfig,
    *,
    fast_forward: bool = True,
    slo_classes: dict[str, SLOClass] | None = None,
    seed: int = 0,
    where: str = "engine",
) -> Callable[[int, str], Instance]:
    """``make(index, name)`` -> a new engine of group ``g`` (the step model and KV size are
    computed once); engine policies get the scenario context (SLO classes, a per-instance
    seed) when their factories accept it."""
    gpu, model = get_gpu(g.gpu), get_model(g.model)
    step_model = build_step_model(g.gpu, g.model, g.tp, g.profile, **g.perf.knobs())
    e = group_engine(g, where)
    blocks = group_kv_blocks(g, e)

    def make(i: int, name: str) -> Instance:
        ctx = {"slo_classes": slo_classes or {}, "seed": seed * 1_000_003 + i}

        def policy(registry: dict[str, Any], kind: str, ref: PolicyRef) -> Any:
            return make_policy(registry, kind, ref.name, ref.params, ctx)

        return Instance(
            i,
            blocks,
            step_model,
            e,
            name=name,
            model=model.name,
            gpu=gpu.name,
            role=g.role,
            kv_bytes_per_token=kv_bytes_per_token_per_gpu(model, g.tp),
            host_link_bytes_s=e.host_link_gbps * 1e9,
            ordering=policy(ORDERING, "ordering", policies.ordering),
            admission=policy(ADMISSION, "admission", policies.admission),
            preemption=policy(PREEMPTION, "preemption", policies.preemption),
            fast_forward=fast_forward,
        )

    return make


def build_instances(
    groups: list[InstanceGroup],
    policies: PoliciesConfig,
    *,
    fast_forward: bool = True,
    slo_classes: dict[str, SLOClass] | None = None,
    seed: int = 0,
) -> list[Instance]:
    """One engine per instance of each group, indexed in order. Engine knobs left unset
    take vLLM's values for the group's GPU and model (:mod:`fleetsched.engine.defaults`)."""
    instances: list[Instance] = []
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
