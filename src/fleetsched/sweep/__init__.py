"""Grids of scenarios run in processes or on Ray, cached by content; capacity search."""

from fleetsched.sweep.grid import (
    PointResult,
    capacity_search,
    expand_grid,
    parse_grid,
    run_many,
    run_points,
    scenario_key,
    variant,
)

__all__ = [
    "PointResult",
    "capacity_search",
    "expand_grid",
    "parse_grid",
    "run_many",
    "run_points",
    "scenario_key",
    "variant",
]
