"""Build simulator instances from a scenario's cluster section."""

from __future__ import annotations

from fleetsched.core.config import InstanceGroup, PoliciesConfig, SLOClass
from fleetsched.engine.instance import Instance
from fleetsched.perf import build_step_model, get_gpu, get_model, kv_capacity_blocks
from fleetsched.perf.roofline import kv_bytes_per_token_per_gpu
from fleetsched.policies.engine import ADMISSION, ORDERING, PREEMPTION, make


def build_instances(
    groups: list[InstanceGroup],
    policies: PoliciesConfig,
    *,
    fast_forward: bool = True,
    slo_classes: dict[str, SLOClass] | None = None,
    seed: int = 0,
) -> list[Instance]:
    """One engine per instance of each group; engine policies get the scenario context
    (SLO classes, a per-instance seed) when their factories accept it."""
    instances: list[Instance] = []
    for g in groups:
        gpu, model = get_gpu(g.gpu), get_model(g.model)
        step_model = build_step_model(g.gpu, g.model, g.tp, g.profile)
        e = g.engine
        blocks = e.num_gpu_blocks or kv_capacity_blocks(
            gpu, model, g.tp, e.gpu_memory_utilization, e.block_tokens
        )
        for j in range(g.count):

            def ctx(i: int) -> dict:
                return {
                    "slo_classes": slo_classes or {},
                    "seed": seed * 1_000_003 + i,
                }

            instances.append(
                Instance(
                    len(instances),
                    blocks,
                    step_model,
                    e,
                    name=f"{g.name}-{j}",
                    model=model.name,
                    gpu=gpu.name,
                    role=g.role,
                    kv_bytes_per_token=kv_bytes_per_token_per_gpu(model, g.tp),
                    host_link_bytes_s=e.host_link_gbps * 1e9,
                    ordering=make(
                        ORDERING,
                        "ordering",
                        policies.ordering.name,
                        policies.ordering.params,
                        ctx(len(instances)),
                    ),
                    admission=make(
                        ADMISSION,
                        "admission",
                        policies.admission.name,
                        policies.admission.params,
                        ctx(len(instances)),
                    ),
                    preemption=make(
                        PREEMPTION,
                        "preemption",
                        policies.preemption.name,
                        policies.preemption.params,
                        ctx(len(instances)),
                    ),
                    fast_forward=fast_forward,
                )
            )
    return instances
