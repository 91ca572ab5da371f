"""A greedy placer that behaves like the Kubernetes default scheduler (kube-scheduler).

Followed: kube-scheduler's scheduling cycle (``pkg/scheduler``; the scores as in
``framework/plugins/noderesources/least_allocated.go`` @ 05c351a9 and
``balanced_allocation.go`` @ 02d7708a of kubernetes/kubernetes):
pods leave the active queue highest ``priority`` first, then in creation order (here: file
order, replica by replica); each pod is scheduled on its own, never revisited:

1. **Filter** (``NodeResourcesFit``, ``NodeAffinity``, ``InterPodAffinity``): the node has
   the GPUs and host memory the replica requests left, an allowed GPU kind with enough GPU
   memory, no replica of the same deployment when it asks for anti-affinity, and a replica
   of its co-location target when it names one.
2. **Score** each feasible node with the default plugins' formulas, weight 1 each:
   ``NodeResourcesFit`` in its default ``LeastAllocated`` mode,
   ``(allocatable_r - requested_r) * 100 // allocatable_r`` per resource, integer-averaged
   over the resources, and ``NodeResourcesBalancedAllocation``,
   ``int((1 - std of requested_r / allocatable_r) * 100)`` (for two resources the std is
   ``|f1 - f2| / 2``); requests include the incoming replica. Resources: GPUs, and host
   memory where the node declares it.
3. **Select** the best score; ties break at random (kube-scheduler samples uniformly among
   the top-scoring nodes), here from a seeded generator.

Deliberate differences: no preemption (pods arrive in priority order, so there is nothing
lower-priority to evict except existing placements, which are kept fixed); no
``percentageOfNodesToScore`` sampling (every node is scored, as kube-scheduler does below
100 nodes).
"""

from __future__ import annotations

import time

import numpy as np

from fleetsched.policies.placement.problem import Assignment, PlacementResult, Problem


def _feasible(
    problem: Problem, d: int, n: int, free_g: list[int], free_m: list[int], count: list[list[int]]
) -> bool:
    dep = problem.deployments[d]
    if free_g[n] < dep.gpus or free_m[n] < dep.memory_mib:
        return False
    if dep.anti_affinity and count[d][n] + problem.existing.get((dep.name, n), 0) > 0:
        return False
    c = dep.colocate_with
    if c is not None:
        names = {x.name: i for i, x in enumerate(problem.deployments)}
        other = problem.existing.get((c, n), 0) + (count[names[c]][n] if c in names else 0)
        if not other:
            return False
    return True


def _score(problem: Problem, d: int, n: int, free_g: list[int], free_m: list[int]) -> int:
    dep, node = problem.deployments[d], problem.nodes[n]
    fracs: list[float] = []
    least = 0
    res = [(node.total_gpus, node.total_gpus - free_g[n] + dep.gpus)]
    if node.total_memory_mib:
        res.append((node.total_memory_mib, node.total_memory_mib - free_m[n] + dep.memory_mib))
    for alloc, req in res:
        if alloc <= 0:
            continue
        least += (alloc - req) * 100 // alloc if req <= alloc else 0
        fracs.append(min(req / alloc, 1.0))
    least //= max(len(fracs), 1)
    std = float(np.std(fracs)) if len(fracs) > 1 else 0.0
    return least + int((1.0 - std) * 100)


def greedy_place(problem: Problem, *, seed: int = 0, **_: object) -> PlacementResult:
    """Place replicas one at a time as kube-scheduler would (see the module docstring)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    free_g = [n.gpus for n in problem.nodes]
    free_m = [n.memory_mib for n in problem.nodes]
    count = [[0] * len(problem.nodes) for _ in problem.deployments]
    a: Assignment = [[None] * dep.replicas for dep in problem.deployments]
    order = sorted(range(len(problem.deployments)), key=lambda d: -problem.deployments[d].priority)
    for d in order:
        dep = problem.deployments[d]
        for r in range(dep.replicas):
            cands = [n for n in dep.eligible if _feasible(problem, d, n, free_g, free_m, count)]
            if not cands:
                continue
            scores = [_score(problem, d, n, free_g, free_m) for n in cands]
            best = max(scores)
            top = [n for n, s in zip(cands, scores, strict=True) if s == best]
            n = top[int(rng.integers(len(top)))] if len(top) > 1 else top[0]
            a[d][r] = n
            free_g[n] -= dep.gpus
            free_m[n] -= dep.memory_mib
            count[d][n] += 1
    return PlacementResult(a, "greedy", solve_s=time.perf_counter() - t0)
