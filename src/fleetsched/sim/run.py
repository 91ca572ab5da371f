"""Run a scenario end to end: workload -> simulator -> records and summary."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetsched.core.config import Scenario
from fleetsched.core.request import Request
from fleetsched.engine.instance import EngineStats
from fleetsched.metrics.records import RecordTable
from fleetsched.metrics.summary import summarize
from fleetsched.metrics.timeseries import InstanceSeries
from fleetsched.metrics.workflows import WorkflowRecord, summarize_workflows
from fleetsched.policies.autoscaling import make_autoscaler
from fleetsched.policies.routing import make_router
from fleetsched.sim.autoscale import FleetController
from fleetsched.sim.build import build_instances, instance_factory
from fleetsched.sim.check import check_scenario
from fleetsched.sim.judge import Judge
from fleetsched.sim.kernel import Simulator
from fleetsched.sim.sampler import Sampler
from fleetsched.sim.workflows import WorkflowDriver
from fleetsched.workload.tasks import DEFAULT_QUALITY
from fleetsched.workload.workflows import Workflow


@dataclass(slots=True)
class SimResult:
    records: RecordTable  # a Sequence of RequestRecord, packed
    summary: dict[str, Any]
    engine_stats: list[EngineStats] = field(default_factory=list)
    wall_s: float = 0.0
    #: One record per agent workflow (workflow workloads only).
    workflows: list[WorkflowRecord] = field(default_factory=list)
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
    workflows: Iterable[Workflow] | None = None,
    fast_forward: bool = True,
    progress: Callable[[int, float], None] | None = None,
    sample_interval_s: float | None = None,
    autoscaling_policy: Any = None,
) -> SimResult:
    """Simulate ``scenario`` (or ``requests``, or agent ``workflows``, instead of its
    workload) and summarise it. A workflow workload adds ``summary["workflows"]``
    (:func:`~fleetsched.metrics.workflows.summarize_workflows`).

    The scenario is checked first (:func:`~fleetsched.sim.check.check_scenario`): a bad
    policy, GPU, model or tp raises :class:`~fleetsched.errors.InputError` naming the field.
    ``sample_interval_s`` records every instance's queue, running batch and KV use at that
    interval of simulated time (``SimResult.timeseries``); off by default.
    ``autoscaling_policy`` replaces the policy named in ``scenario.autoscaling`` by this
    object (to train a learning policy over several runs).
    """
    check_scenario(scenario, workload=requests is None and workflows is None)
    sampler = Sampler(sample_interval_s) if sample_interval_s is not None else None
    t0 = time.perf_counter()
    instances = build_instances(
        scenario.cluster,
        scenario.policies,
        fast_forward=fast_forward,
        slo_classes=dict(scenario.slo_classes),
        seed=scenario.seed,
    )
    quality = scenario.quality if scenario.quality is not None else DEFAULT_QUALITY
    router = make_router(
        scenario.policies.router.name,
        scenario.policies.router.params,
        seed=scenario.seed,
        context={"quality": quality},
    )
    controller = None
    if scenario.autoscaling is not None:
        controller = _controller(scenario, instances, fast_forward, autoscaling_policy)
    if requests is None and workflows is None:
        from fleetsched.workload import build_workflows, build_workload, is_workflow_workload

        if is_workflow_workload(scenario.workload):
            workflows = build_workflows(scenario.workload, scenario.seed)
        else:
            requests = build_workload(scenario.workload, scenario.seed)
    driver = WorkflowDriver(workflows) if workflows is not None else None
    sim = Simulator(
        instances,
        router,
        view_refresh_s=scenario.view_refresh_s,
        kv_link_bytes_s=scenario.kv_link_gb_s * 1e9,
        followups=driver,
        judge=Judge(quality, scenario.seed),
        sampler=sampler,
        autoscaler=controller,
        stream_prompts=scenario.stream_prompts,
        seed=scenario.seed,
    )
    if driver is not None:
        requests = driver.requests()
    assert requests is not None
    records = sim.run(requests, progress=progress)
    wall = time.perf_counter() - t0
    instances = sim.instances
    summary = summarize(records, scenario.slo_classes, wall_s=wall, num_instances=len(instances))
    if controller is not None:
        ends = records.column("finish_s")
        ends = ends[~np.isnan(ends)]
        controller.finish(float(ends.max()) if ends.size else sim.now)
        summary["autoscaling"] = controller.summary()
    stats = [inst.stats for inst in instances]
    summary["engine_steps"] = sum(s.steps for s in stats)
    summary["recomputed_tokens"] = sum(s.recomputed_tokens for s in stats)
    summary["swap_s"] = sum(s.switch_s for s in stats)
    summary["rejected"] = sum(s.rejected for s in stats)
    summary["migration_downtime_s"] = sim.stats.migration_downtime_s
    summary["kv_transfers"] = sim.stats.kv_transfers
    summary["fleet_energy_j"] = fleet_energy_j(instances, summary["duration_s"])
    models = [inst.model for inst in instances]
    if len(set(models)) > 1:
        per_model: dict[str, int] = {}
        for r in records:
            if r.instance >= 0:
                per_model[models[r.instance]] = per_model.get(models[r.instance], 0) + 1
        summary["per_model_requests"] = per_model
    wf_records = driver.finish() if driver is not None else []
    if driver is not None:
        summary["workflows"] = summarize_workflows(wf_records)
    series = sampler.series() if sampler is not None else None
    return SimResult(
        records,
        summary,
        stats,
        wall,
        workflows=wf_records,
        autoscaler=controller,
        timeseries=series,
    )


def fleet_energy_j(instances: list[Any], duration_s: float) -> float:
    """Joules the fleet drew over the run: every step's energy plus idle power between steps
    (``perf/power.py``); NaN when the run has no duration or an engine has no power model
    (llama.cpp on a CPU)."""
    if duration_s != duration_s:  # NaN
        return math.nan
    total = 0.0
    for inst in instances:
        m = getattr(inst, "meter", None)
        if m is None:
            return math.nan
        total += m.busy_j + m.idle_w * max(duration_s - inst.stats.busy_s, 0.0)
    return total


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
