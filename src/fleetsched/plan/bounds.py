"""Feasibility bounds from the perf model, so hopeless fleets are never simulated.

For one (GPU, model, TP) replica and a workload:

* **weights fit**: the KV cache left after weights and the activation reserve holds at
  least one block (the same computation the simulator builds instances with);
* **the largest request fits** its KV (prompt + output) in one replica, else it would be
  rejected and the SLO (every request completed) cannot hold;
* **TPOT floor**: no request decodes faster than a decode step of one request with no
  context, so a ``tpot`` clause below that step time is hopeless at any replica count;
* **throughput**: every output token but the first is one decode slot of one step. A step
  holds at most ``S`` decodes: ``max_num_seqs``, and no more than the KV cache holds at
  ``c`` tokens each, ``c`` the 10th percentile of the prompt lengths (a decoding request
  holds at least its prompt); it costs at least ``step_time(0, 0, S, S * c)``. So a
  replica decodes at most ``S / step_time(0, 0, S, S * c)`` tokens/s, and over the arrival
  span the fleet needs ``ceil(decode tokens / span / that)`` replicas. This is a
  steady-state estimate, not a proof (a short run may end with a backlog; a few short
  prompts may decode side by side): the planner verifies by simulation that one replica
  fewer than its answer misses the SLO, and searches lower when it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleetsched.core.config import InstanceGroup, PoliciesConfig, WorkloadConfig
from fleetsched.errors import InputError
from fleetsched.plan.slo import Clause


@dataclass(slots=True)
class WorkloadStats:
    requests: int
    span_s: float  # first to last arrival
    decode_tokens: int  # output tokens after the first, summed
    max_request_tokens: int  # largest prompt + output
    prompt_p10: int = 1  # 10th percentile of the prompt lengths


def workload_stats(cfg: WorkloadConfig, seed: int) -> WorkloadStats:
    from fleetsched.workload import build_workload

    n = dec = big = 0
    first = last = 0.0
    prompts: list[int] = []
    for r in build_workload(cfg, seed):
        prompts.append(r.prompt_tokens)
        if n == 0:
            first = r.arrival_s
        last = r.arrival_s
        n += 1
        dec += max(r.output_tokens - 1, 0)
        big = max(big, r.prompt_tokens + r.output_tokens)
    if n == 0:
        raise InputError("the workload has no requests")
    p10 = int(np.percentile(np.asarray(prompts), 10))
    return WorkloadStats(n, last - first, dec, big, max(1, p10))


@dataclass(slots=True)
class Bounds:
    feasible: bool
    reason: str = ""
    min_replicas: int = 1
    decode_tokens_s: float = math.nan  # one replica's decode throughput ceiling


def replica_bounds(group: InstanceGroup, stats: WorkloadStats, clauses: list[Clause]) -> Bounds:
    """What the perf model rules out for fleets of ``group``'s replica (count ignored)."""
    from fleetsched.sim.build import build_instances

    try:
        inst = build_instances([group.model_copy(update={"count": 1})], PoliciesConfig())[0]
    except InputError as e:
        return Bounds(False, str(e).split(":")[0] if "does not fit" in str(e) else str(e))
    cap_tokens = inst.kv.num_blocks * inst.bt
    if stats.max_request_tokens > cap_tokens:
        return Bounds(
            False,
            f"the largest request ({stats.max_request_tokens:,} tokens) exceeds one replica's "
            f"KV cache ({cap_tokens:,} tokens)",
        )
    sm = inst.step_model
    floor_tpot = sm.step_time(0, 0.0, 1, 0)
    for c in clauses:
        if c.metric == "tpot_s" and c.value < floor_tpot:
            return Bounds(
                False, f"{c.text}: one decode step alone takes {floor_tpot * 1000:.1f} ms"
            )
    c = stats.prompt_p10
    s = max(1, min(inst.max_num_seqs, cap_tokens // c))
    per_replica = s / sm.step_time(0, 0.0, s, s * c)
    need = 1
    if stats.span_s > 0:
        need = max(1, math.ceil(stats.decode_tokens / stats.span_s / per_replica - 1e-9))
    return Bounds(True, "", need, per_replica)
