"""The cheapest fleet meeting an SLO: GPU kind x TP x replica count, by simulation.

For every (GPU, TP) the perf-model bounds (``bounds.py``) drop what cannot work and give a
lower bound on the replica count; from there the count doubles until the SLO holds, then
bisects to the fewest replicas that meet it (assuming more replicas never hurt). Probes of
all candidates run in rounds on the sweep runner (processes or Ray, cached), and a
candidate stops as soon as it cannot beat the cheapest fleet found. The answer is verified:
re-simulated it meets the SLO, and one replica fewer misses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetsched.core.config import Scenario, apply_overrides
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json
from fleetsched.perf import get_gpu, get_model
from fleetsched.plan.bounds import Bounds, WorkloadStats, replica_bounds, workload_stats
from fleetsched.plan.slo import Clause, meets
from fleetsched.sweep.grid import run_points


@dataclass(slots=True)
class Probe:
    gpu: str
    tp: int
    count: int
    cost_per_h: float
    meets: bool
    summary: dict[str, Any]


@dataclass(slots=True)
class Candidate:
    gpu: str
    tp: int
    price: float
    bounds: Bounds
    lo: int = 0  # largest count known (or bounded) to miss
    hi: int | None = None  # smallest count known to meet
    probes: dict[int, Probe] = field(default_factory=dict)
    stopped: str = ""  # why the search of this candidate ended early

    def cost(self, count: int) -> float:
        return count * self.tp * self.price

    def next_count(self, max_replicas: int) -> int | None:
        if self.hi is None:
            n = max(self.bounds.min_replicas, 2 * self.lo if self.lo else 1)
            return n if n <= max_replicas else None
        if self.hi - self.lo > 1:
            return (self.lo + self.hi) // 2
        return None


@dataclass(slots=True)
class PlanResult:
    candidates: list[Candidate]
    best: Candidate | None
    verified: bool = False
    verification: dict[str, Any] = field(default_factory=dict)
    stats: WorkloadStats | None = None

    @property
    def probes(self) -> list[Probe]:
        return [p for c in self.candidates for p in c.probes.values()]


def fleet_scenario(base: Scenario, model: str, gpu: str, tp: int, count: int) -> Scenario:
    sc = apply_overrides(
        base,
        {
            "cluster.0.gpu": gpu,
            "cluster.0.model": model,
            "cluster.0.tp": tp,
            "cluster.0.count": count,
            "name": f"{model}-{gpu}-tp{tp}-x{count}",
        },
    )
    return sc


def plan_fleet(
    base: Scenario,
    clauses: list[Clause],
    *,
    model: str,
    gpus: list[str],
    tps: list[int],
    prices: dict[str, float],
    max_replicas: int = 256,
    jobs: int = 0,
    ray: bool = False,
    ray_address: str | None = None,
    cache_dir: str | Path | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> PlanResult:
    """Search every (GPU, TP) for its fewest replicas meeting ``clauses``; pick the cheapest."""
    if len(base.cluster) != 1:
        raise InputError("plan needs a scenario with one instance group (the fleet it sizes)")
    model = get_model(model).name
    stats = workload_stats(base.workload, base.seed)
    cands: list[Candidate] = []
    for g in gpus:
        gname = get_gpu(g).name
        if gname not in prices:
            raise InputError(f"no price for {gname}: add it to a --prices file")
        for tp in tps:
            group = base.cluster[0].model_copy(update={"gpu": gname, "model": model, "tp": tp})
            b = replica_bounds(group, stats, clauses)
            c = Candidate(gname, tp, prices[gname], b)
            if not b.feasible:
                c.stopped = b.reason
            else:
                c.lo = b.min_replicas - 1
            cands.append(c)

    def run_round(todo: list[tuple[Candidate, int]]) -> None:
        scs = [fleet_scenario(base, model, c.gpu, c.tp, n) for c, n in todo]
        res = run_points(scs, jobs=jobs, ray=ray, ray_address=ray_address, cache_dir=cache_dir)
        for (c, n), r in zip(todo, res, strict=True):
            if r.summary is None:
                raise InputError(f"{c.gpu} tp={c.tp} x{n}: the simulation failed: {r.error}")
            ok = meets(r.summary, clauses)
            c.probes[n] = Probe(c.gpu, c.tp, n, c.cost(n), ok, r.summary)
            if ok:
                c.hi = n if c.hi is None else min(c.hi, n)
            else:
                c.lo = max(c.lo, n)

    def best_cost() -> float:
        done = [c.cost(c.hi) for c in cands if c.hi is not None]
        return min(done) if done else float("inf")

    rounds = 0
    while True:
        todo = []
        bc = best_cost()
        for c in cands:
            if c.stopped:
                continue
            n = c.next_count(max_replicas)
            if n is None:
                if c.hi is None:
                    c.stopped = f"misses the SLO even with {max_replicas} replicas"
                continue
            if c.cost(c.lo + 1) > bc:
                c.stopped = "cannot beat a cheaper fleet"
                continue
            todo.append((c, n))
        if not todo:
            break
        rounds += 1
        run_round(todo)
        if on_round:
            on_round(rounds, len(todo))

    result = PlanResult(cands, None, stats=stats)
    # Verify the answer; if one replica fewer also meets (a short run ending with a backlog
    # can beat the steady-state bound), search below it and verify again.
    for _ in range(8):
        ok = [c for c in cands if c.hi is not None]
        if not ok:
            return result
        best = min(ok, key=lambda c: (c.cost(c.hi), c.hi, c.gpu, c.tp))  # type: ignore[arg-type]
        n = best.hi
        assert n is not None
        check = [fleet_scenario(base, model, best.gpu, best.tp, n)]
        if n > 1:
            check.append(fleet_scenario(base, model, best.gpu, best.tp, n - 1))
        fresh = run_points(check, jobs=jobs, ray=ray, ray_address=ray_address)
        if any(r.summary is None for r in fresh):
            raise InputError(f"verification run failed: {[r.error for r in fresh]}")
        meets_n = meets(fresh[0].summary, clauses)  # type: ignore[arg-type]
        fewer = meets(fresh[1].summary, clauses) if n > 1 else None  # type: ignore[arg-type]
        same = summary_to_json(fresh[0].summary) == summary_to_json(best.probes[n].summary)  # type: ignore[arg-type]
        result.best = best
        result.verification = {
            "count": n,
            "meets": meets_n,
            "same_as_search": same,
            "one_fewer": n - 1,
            "one_fewer_meets": fewer,
        }
        if fewer:
            # The bound was too strict here: search below n.
            best.probes[n - 1] = Probe(
                best.gpu,
                best.tp,
                n - 1,
                best.cost(n - 1),
                True,
                fresh[1].summary,  # type: ignore[arg-type]
            )
            best.hi, best.lo = n - 1, 0
            while best.hi - best.lo > 1:
                run_round([(best, (best.lo + best.hi) // 2)])
            continue
        result.verified = bool(meets_n and same and fewer is not True)
        return result
    return result


def frontier(probes: list[Probe], clause: Clause) -> list[Probe]:
    """The probes no other probe beats on both cost and ``clause``'s observed value."""
    pts = sorted(probes, key=lambda p: (p.cost_per_h, clause.observed(p.summary)))
    out: list[Probe] = []
    best = float("inf")
    for p in pts:
        v = clause.observed(p.summary)
        if v < best:
            out.append(p)
            best = v
    return out
