"""Optimal placement with OR-Tools CP-SAT (the ``place`` extra), within a time limit.

One Boolean per (replica, eligible node). Constraints: each replica on at most one node;
per node, GPUs and host memory of the placed replicas within what is free; anti-affinity
(at most one replica of the deployment per node, existing ones counted); co-location (a
replica only where its target deployment has a replica, placed or existing). Replicas of
one deployment are interchangeable, so replica ``r + 1`` is placed only if replica ``r`` is
(symmetry breaking).

Two phases, as "Priority Matters" (Christensen, Giallorenzo & Mauro, 2025) orders them:
first maximise the priority-lexicographic value (see ``problem.py``), then, with the value
held at its best, minimise the nodes left fragmented. Both start from a hint (the greedy
placement when given), so the answer is never worse than the hint. ``optimal`` says the
solver proved no better value exists; with a hint of equal value that certifies the hint.
"""

from __future__ import annotations

import time
from typing import Any

from fleetsched.errors import InputError
from fleetsched.policies.placement.problem import (
    Assignment,
    PlacementResult,
    Problem,
    min_replica_gpus,
)


def _cp_model() -> Any:
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        raise InputError(
            "CP-SAT placement needs OR-Tools: pip install 'fleetsched[place]'"
        ) from None
    return cp_model


def cpsat_place(
    problem: Problem,
    *,
    time_limit_s: float = 1.0,
    hint: Assignment | None = None,
    fragmentation: bool = True,
    workers: int = 2,
    seed: int = 0,
) -> PlacementResult:
    """The best placement CP-SAT finds within ``time_limit_s`` (both phases together)."""
    cp_model = _cp_model()
    t0 = time.perf_counter()
    m = cp_model.CpModel()
    nodes, deps = problem.nodes, problem.deployments
    x: dict[tuple[int, int, int], Any] = {}
    placed: list[list[Any]] = []
    for d, dep in enumerate(deps):
        row = []
        for r in range(dep.replicas):
            vs = []
            for n in dep.eligible:
                v = m.new_bool_var(f"x{d}_{r}_{n}")
                x[d, r, n] = v
                vs.append(v)
            p = m.new_bool_var(f"p{d}_{r}")
            m.add(sum(vs) == p)
            row.append(p)
        for r in range(dep.replicas - 1):
            m.add_implication(row[r + 1], row[r])
        placed.append(row)
    on: dict[tuple[int, int], Any] = {}  # replicas of deployment d on node n
    for d, dep in enumerate(deps):
        for n in dep.eligible:
            on[d, n] = sum(x[d, r, n] for r in range(dep.replicas))
    for n, node in enumerate(nodes):
        here = [(d, dep) for d, dep in enumerate(deps) if (d, n) in on]
        if not here:
            continue
        m.add(sum(dep.gpus * on[d, n] for d, dep in here) <= node.gpus)
        if node.total_memory_mib:
            m.add(sum(dep.memory_mib * on[d, n] for d, dep in here) <= node.memory_mib)
    names = {dep.name: d for d, dep in enumerate(deps)}
    for d, dep in enumerate(deps):
        for n in dep.eligible:
            if dep.anti_affinity:
                m.add(on[d, n] <= max(0, 1 - problem.existing.get((dep.name, n), 0)))
            c = dep.colocate_with
            if c is not None and not problem.existing.get((c, n), 0):
                t = names.get(c)
                if t is None or (t, n) not in on:
                    m.add(on[d, n] == 0)
                else:
                    for r in range(dep.replicas):
                        m.add(on[t, n] >= 1).only_enforce_if(x[d, r, n])
    w = problem.weights()
    objective = sum(w[d] * p for d, row in enumerate(placed) for p in row)
    m.maximize(objective)
    if hint is not None:
        for d, dep in enumerate(deps):
            # Replicas sorted placed-first so the hint respects the symmetry breaking.
            nodes_of = sorted(n for n in hint[d] if n is not None) + [None] * sum(
                n is None for n in hint[d]
            )
            for r, hn in enumerate(nodes_of):
                for n in dep.eligible:
                    m.add_hint(x[d, r, n], 1 if hn == n else 0)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s, 0.01)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # Out of time before a first solution (large instances, short limits): the hint
        # stands, or nothing is placed.
        a0: Assignment = (
            [list(r) for r in hint] if hint is not None else [[None] * dep.replicas for dep in deps]
        )
        return PlacementResult(a0, "cpsat", solve_s=time.perf_counter() - t0)
    optimal = status == cp_model.OPTIMAL
    best = round(solver.objective_value)
    bound = round(solver.best_objective_bound)
    sol = {k: solver.boolean_value(v) for k, v in x.items()}
    frag_opt = False
    left = time_limit_s - (time.perf_counter() - t0)
    if fragmentation and left > 0.01:
        # Phase 2: hold the value, count nodes with stranded GPUs.
        m.add(objective >= best)
        m.clear_hints()
        for k, v in x.items():
            m.add_hint(v, sol[k])
        need = min_replica_gpus(problem)
        frags = []
        for n, node in enumerate(nodes):
            here = [(d, dep) for d, dep in enumerate(deps) if (d, n) in on]
            if not here or node.gpus == 0:
                continue  # nothing can change here: a constant of the objective
            free = node.gpus - sum(dep.gpus * on[d, n] for d, dep in here)
            f = m.new_bool_var(f"frag{n}")
            if need[n] <= 1:
                # Every free GPU is usable when a 1-GPU replica may run here (or none is).
                if need[n] == 0:
                    m.add(free == 0).only_enforce_if(f.Not())
                else:
                    m.add(f == 0)
            else:
                has_free = m.new_bool_var(f"free{n}")
                m.add(free >= 1).only_enforce_if(has_free)
                m.add(free == 0).only_enforce_if(has_free.Not())
                small = m.new_bool_var(f"small{n}")
                m.add(free <= need[n] - 1).only_enforce_if(small)
                m.add(free >= need[n]).only_enforce_if(small.Not())
                m.add_bool_or([has_free.Not(), small.Not(), f])
            frags.append(f)
        m.minimize(sum(frags))
        solver.parameters.max_time_in_seconds = left
        st2 = solver.solve(m)
        if st2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            sol = {k: solver.boolean_value(v) for k, v in x.items()}
            frag_opt = st2 == cp_model.OPTIMAL
    a: Assignment = [[None] * dep.replicas for dep in deps]
    for (d, r, n), val in sol.items():
        if val:
            a[d][r] = n
    return PlacementResult(
        a,
        "cpsat",
        optimal=optimal,
        solve_s=time.perf_counter() - t0,
        bound=bound,
        fragmentation_optimal=frag_opt,
    )
