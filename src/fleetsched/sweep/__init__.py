"""Grids of scenarios run in parallel processes (locally); capacity search."""

from fleetsched.sweep.grid import capacity_search, run_many, variant

__all__ = ["capacity_search", "run_many", "variant"]
