"""Run many scenario variants in parallel worker processes and collect their summaries."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from fleetsched.core.config import PolicyRef, Scenario


def variant(
    scenario: Scenario,
    *,
    router: str | None = None,
    router_params: dict[str, Any] | None = None,
    rate_scale: float | None = None,
    admission: str | None = None,
    ordering: str | None = None,
    preemption: str | None = None,
    policy_params: dict[str, dict[str, Any]] | None = None,
    engine: dict[str, Any] | None = None,
    name: str | None = None,
) -> Scenario:
    """A copy of ``scenario`` with some policies, the rate scale or engine knobs changed."""
    pol = scenario.policies
    params = policy_params or {}
    for field, value in (
        ("router", router),
        ("admission", admission),
        ("ordering", ordering),
        ("preemption", preemption),
    ):
        if value is not None:
            extra = router_params if field == "router" else params.get(field)
            pol = pol.model_copy(update={field: PolicyRef(name=value, params=extra or {})})
    wl = scenario.workload
    if rate_scale is not None:
        wl = wl.model_copy(
            update={"transforms": wl.transforms.model_copy(update={"rate_scale": rate_scale})}
        )
    cluster = scenario.cluster
    if engine:
        cluster = [
            g.model_copy(update={"engine": g.engine.model_copy(update=engine)}) for g in cluster
        ]
    update: dict[str, Any] = {"policies": pol, "workload": wl, "cluster": cluster}
    if name:
        update["name"] = name
    return Scenario.model_validate(scenario.model_copy(update=update).model_dump())


def _run(scenario: Scenario) -> dict[str, Any]:
    from fleetsched.sim.run import simulate

    return simulate(scenario).summary


def run_many(
    scenarios: Sequence[Any],
    jobs: int = 0,
    on_done: Callable[[int], None] | None = None,
    fn: Callable[[Any], Any] = _run,
) -> list[Any]:
    """``fn(item)`` of each item, in order; ``jobs`` worker processes (0 = CPU count). By
    default the items are scenarios and ``fn`` gives their summaries; another ``fn`` must be
    picklable (a module-level function or a ``functools.partial`` of one)."""
    jobs = min(len(scenarios), jobs or os.cpu_count() or 1)
    if jobs <= 1:
        out = []
        for i, sc in enumerate(scenarios):
            out.append(fn(sc))
            if on_done:
                on_done(i)
        return out
    results: list[Any] = [None] * len(scenarios)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = {pool.submit(fn, sc): i for i, sc in enumerate(scenarios)}
        for f in as_completed(futs):
            i = futs[f]
            results[i] = f.result()
            if on_done:
                on_done(i)
    return results


def capacity_search(
    meets: Callable[[float], bool],
    low: float,
    high: float,
    *,
    rel_tol: float = 0.05,
    max_iter: int = 12,
) -> float:
    """Largest rate scale in [low, high] for which ``meets(scale)`` holds (bisection, assuming
    it holds below some threshold and fails above). Returns ``low`` if it fails at ``low``."""
    if not meets(low):
        return low
    if meets(high):
        return high
    for _ in range(max_iter):
        if high / low - 1 <= rel_tol:
            break
        mid = (low * high) ** 0.5
        if meets(mid):
            low = mid
        else:
            high = mid
    return low
