"""Run a scenario end to end: workload -> simulator -> records and summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetsched.core.config import Scenario
from fleetsched.core.request import Request
from fleetsched.engine.instance import EngineStats
from fleetsched.metrics.records import RequestRecord
from fleetsched.metrics.summary import summarize
from fleetsched.policies.routing import make_router
from fleetsched.sim.build import build_instances
from fleetsched.sim.check import check_scenario
from fleetsched.sim.kernel import Simulator


@dataclass(slots=True)
class SimResult:
    records: list[RequestRecord]
    summary: dict[str, Any]
    engine_stats: list[EngineStats] = field(default_factory=list)
    wall_s: float = 0.0


def simulate(
    scenario: Scenario,
    *,
    requests: Iterable[Request] | None = None,
    fast_forward: bool = True,
    progress: Callable[[int, float], None] | None = None,
) -> SimResult:
    """Simulate ``scenario`` (or ``requests`` instead of its workload) and summarise it.

    The scenario is checked first (:func:`~fleetsched.sim.check.check_scenario`): a bad
    policy, GPU, model or tp raises :class:`~fleetsched.errors.InputError` naming the field.
    """
    check_scenario(scenario, workload=requests is None)
    t0 = time.perf_counter()
    instances = build_instances(
        scenario.cluster,
        scenario.policies,
        fast_forward=fast_forward,
        slo_classes=dict(scenario.slo_classes),
        seed=scenario.seed,
    )
    router = make_router(
        scenario.policies.router.name, scenario.policies.router.params, seed=scenario.seed
    )
    sim = Simulator(
        instances,
        router,
        view_refresh_s=scenario.view_refresh_s,
        kv_link_bytes_s=scenario.kv_link_gb_s * 1e9,
    )
    if requests is None:
        from fleetsched.workload import build_workload

        requests = build_workload(scenario.workload, scenario.seed)
    records = sim.run(requests, progress=progress)
    wall = time.perf_counter() - t0
    summary = summarize(records, scenario.slo_classes, wall_s=wall, num_instances=len(instances))
    stats = [inst.stats for inst in instances]
    summary["engine_steps"] = sum(s.steps for s in stats)
    summary["recomputed_tokens"] = sum(s.recomputed_tokens for s in stats)
    summary["swap_s"] = sum(s.switch_s for s in stats)
    summary["rejected"] = sum(s.rejected for s in stats)
    summary["migration_downtime_s"] = sim.stats.migration_downtime_s
    summary["kv_transfers"] = sim.stats.kv_transfers
    return SimResult(records, summary, stats, wall)
