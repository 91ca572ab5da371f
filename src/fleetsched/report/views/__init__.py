"""The report's views, in page order. Each ``build(data)`` returns the views it can draw
from ``data`` (none when its inputs are absent)."""

from __future__ import annotations

from collections.abc import Callable

from fleetsched.report.data import ReportData
from fleetsched.report.views import (
    fidelity,
    instances,
    latency,
    outcomes,
    plan,
    sweep,
    tenants,
    timeline,
)
from fleetsched.report.views.common import View

VIEWS: tuple[Callable[[ReportData], list[View]], ...] = (
    latency.build,
    timeline.build,
    instances.build,
    outcomes.build,
    tenants.build,
    sweep.build,
    plan.build,
    fidelity.build,
)


def build_views(data: ReportData) -> list[View]:
    return [v for build in VIEWS for v in build(data)]


__all__ = ["VIEWS", "View", "build_views"]
