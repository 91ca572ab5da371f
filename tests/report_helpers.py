"""A small real comparison shared by the report tests (simulated once per test session)."""

from __future__ import annotations

from functools import lru_cache

from fleetsched.cli.compare import Outputs, compare_routers
from fleetsched.cli.options import resolve_scenario
from fleetsched.report import ReportData, Run

#: The browser test runs the same comparison through the command line.
COMPARE_ARGS = (
    "--routers",
    "round_robin,least_requests,cache_aware",
    "--requests",
    "2000",
    "--rate-scale",
    "5",
)
ROUTERS = ("round_robin", "least_requests", "cache_aware")


@lru_cache(maxsize=1)
def small_compare() -> tuple[Run, ...]:
    """The default chat scenario (two tenants) at 5x its rate, first 2,000 requests, under
    three routers, sampled every 0.5 s: queues build up, so the views have something to show."""
    sc = resolve_scenario(None, requests=2000, rate_scale=5.0)
    runs = compare_routers(sc, list(ROUTERS), jobs=1, outputs=Outputs(0.5, report=True))
    return tuple(run for _, run in runs.values())


def compare_data() -> ReportData:
    return ReportData(list(small_compare()), title="small compare")
