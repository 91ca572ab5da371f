"""Run a scenario end to end: workload -> simulator -> records and summary."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetsched.core.config import Scenario
from fleetsched.core.request import Request
from fleetsched.engine.instance import EngineStats
from fleetsched.metrics.records import RequestRecord
from fleetsched.metrics.summary import summarize
from fleetsched.metrics.timeseries import InstanceSeries
from fleetsched.policies.autoscaling import make_autoscaler
from fleetsched.policies.routing import make_router
from fleetsched.sim.autoscale import FleetController
from fleetsched.sim.build import build_instances, instance_factory
from fleetsched.sim.check import check_scenario
from fleetsched.sim.kernel import Simulator
from fleetsched.sim.sampler import Sampler


@dataclass(slots=True)
class SimResult:
    records: list[RequestRecord]
    summary: dict[str, Any]
    engine_stats: list[EngineStats] = field(default_factory=list)
    wall_s: float = 0.0
    #: The fleet controller of an autoscaled run (its ``events`` and ``timeline``).
    autoscaler: FleetController | None = None
    #: Per-instance queue, running and KV use over time, when sampling was asked for.
    timeseries: InstanceSeries | None = None


def with_scenario(summary: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The summary with the scenario that produced it under ``"scenario"`` (as JSON data):
    what ``simulate --summary-json`` and ``compare --summary-json`` write, so a summary file
    says what it summarises (the report's header reads it)."""
    return {**summary, "scenario": scenario.model_dump(mode="json")}


def simulate(
    scenario: Scenario,
    *,
    requests: Iterable[Request] | None = None,
    fast_forward: bool = True,
    progress: Callable[[int, float], None] | None = None,
    sample_interval_s: float | None = None,
    autoscaling_policy: Any = None,
) -> SimResult:
    """Simulate ``scenario`` (or ``requests`` instead of its workload) and summarise it.

    The scenario is checked first (:func:`~fleetsched.sim.check.check_scenario`): a bad
    policy, GPU, model or tp raises :class:`~fleetsched.errors.InputError` naming the field.
    ``sample_interval_s`` records every instance's queue, running batch and KV use at that
    interval of simulated time (``SimResult.timeseries``); off by default.
    ``autoscaling_policy`` replaces the policy named in ``scenario.autoscaling`` by this
    object (to train a learning policy over several runs).
    """
    check_scenario(scenario, workload=requests is None)
    sampler = Sampler(sample_interval_s) if sample_interval_s is not None else None
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
    controller = None
    if scenario.autoscaling is not None:
        controller = _controller(scenario, instances, fast_forward, autoscaling_policy)
    sim = Simulator(
        instances,
        router,
        view_refresh_s=scenario.view_refresh_s,
        kv_link_bytes_s=scenario.kv_link_gb_s * 1e9,
        sampler=sampler,
        autoscaler=controller,
        seed=scenario.seed,
    )
    if requests is None:
        from fleetsched.workload import build_workload

        requests = build_workload(scenario.workload, scenario.seed)
    records = sim.run(requests, progress=progress)
    wall = time.perf_counter() - t0
    instances = sim.instances
    summary = summarize(records, scenario.slo_classes, wall_s=wall, num_instances=len(instances))
    if controller is not None:
        ends = [r.finish_s for r in records if not math.isnan(r.finish_s)]
        controller.finish(max(ends) if ends else sim.now)
        summary["autoscaling"] = controller.summary()
    stats = [inst.stats for inst in instances]
    summary["engine_steps"] = sum(s.steps for s in stats)
    summary["recomputed_tokens"] = sum(s.recomputed_tokens for s in stats)
    summary["swap_s"] = sum(s.switch_s for s in stats)
    summary["rejected"] = sum(s.rejected for s in stats)
    summary["migration_downtime_s"] = sim.stats.migration_downtime_s
    summary["kv_transfers"] = sim.stats.kv_transfers
    series = sampler.series() if sampler is not None else None
    return SimResult(records, summary, stats, wall, controller, series)


def _controller(
    scenario: Scenario, instances: list[Any], fast_forward: bool, policy: Any
) -> FleetController:
    cfg = scenario.autoscaling
    assert cfg is not None
    names = [g.name for g in scenario.cluster]
    gi = names.index(cfg.group) if cfg.group is not None else 0
    group = scenario.cluster[gi]
    first = sum(g.count for g in scenario.cluster[:gi])
    make = instance_factory(
        group,
        scenario.policies,
        fast_forward=fast_forward,
        slo_classes=dict(scenario.slo_classes),
        seed=scenario.seed,
    )
    if policy is None:
        policy = make_autoscaler(cfg.policy.name, cfg.policy.params, seed=scenario.seed)
    return FleetController(
        cfg,
        group,
        list(range(first, first + group.count)),
        make,
        policy,
        dict(scenario.slo_classes),
        seed=scenario.seed,
    )
