"""Capacity planning: the cheapest fleet (GPU kind x TP x replicas) that meets an SLO."""

from fleetsched.plan.prices import load_prices
from fleetsched.plan.search import PlanResult, frontier, plan_fleet
from fleetsched.plan.slo import Clause, meets, parse_slo

__all__ = ["Clause", "PlanResult", "frontier", "load_prices", "meets", "parse_slo", "plan_fleet"]
