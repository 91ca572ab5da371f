"""Placement of model replicas on GPU nodes: a kube-scheduler-like greedy and CP-SAT.

A placer is ``f(problem, **options) -> PlacementResult``, registered by name in
:data:`PLACERS`; see ``problem.py`` for the input files and the objective and
``docs/planning.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetsched.policies.placement.cpsat import cpsat_place
from fleetsched.policies.placement.greedy import greedy_place
from fleetsched.policies.placement.problem import (
    Assignment,
    PlacementResult,
    Problem,
    build_problem,
    fragmented_nodes,
    load_problem,
    placed_by_priority,
    value,
    violations,
)

#: name -> placer(problem, **options)
PLACERS: dict[str, Callable[..., PlacementResult]] = {
    "greedy": greedy_place,
    "cpsat": cpsat_place,
}

__all__ = [
    "PLACERS",
    "Assignment",
    "PlacementResult",
    "Problem",
    "build_problem",
    "cpsat_place",
    "fragmented_nodes",
    "greedy_place",
    "load_problem",
    "placed_by_priority",
    "value",
    "violations",
]
