"""Per-workflow records and their summary: end-to-end time and deadline attainment.

A workflow's end-to-end time runs from its start (``arrival_s``) to the finish of its last
call, tool gaps included: what the user of an agent waits for, not what any one call takes.
A workflow *meets its deadline* when it finished by ``deadline_s`` (absolute); one that
failed (a call could never run) or has no deadline does not count as met / is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetsched.metrics.stats import dist_summary

NAN = math.nan


@dataclass(slots=True)
class WorkflowRecord:
    """One workflow's outcome. Times in seconds on the run's clock; unset times are NaN."""

    id: int
    kind: str
    slo_class: str
    tenant: str
    arrival_s: float
    deadline_s: float  # absolute; NaN: none
    finish_s: float  # when its last call finished; NaN: failed
    calls: int
    calls_done: int

    @property
    def finished(self) -> bool:
        return not math.isnan(self.finish_s)

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def met_deadline(self) -> bool:
        return (
            self.finished and not math.isnan(self.deadline_s) and self.finish_s <= self.deadline_s
        )


def _block(recs: list[WorkflowRecord], duration_s: float) -> dict[str, Any]:
    n = len(recs)
    done = [r for r in recs if r.finished]
    with_dl = [r for r in recs if not math.isnan(r.deadline_s)]
    met = sum(1 for r in with_dl if r.met_deadline)
    e2e = np.array([r.e2e_s for r in done], dtype=np.float64)
    return {
        "workflows": n,
        "completed": len(done),
        "failed": n - len(done),
        "calls": sum(r.calls for r in recs),
        "e2e_s": dist_summary(e2e),
        "with_deadline": len(with_dl),
        "deadline_attainment": met / len(with_dl) if with_dl else NAN,
        "goodput_wf_s": met / duration_s if with_dl and duration_s > 0 else NAN,
        "throughput_wf_s": len(done) / duration_s if duration_s > 0 else NAN,
    }


def summarize_workflows(records: Iterable[WorkflowRecord]) -> dict[str, Any]:
    """Summary of workflow records (keys in ``docs/metrics.md``): counts, the end-to-end
    time distribution, deadline attainment and workflow goodput (workflows/s that met their
    deadline) overall and per ``kind``."""
    recs = sorted(records, key=lambda r: r.id)
    done = [r for r in recs if r.finished]
    duration = max(r.finish_s for r in done) - min(r.arrival_s for r in recs) if done else NAN
    out = _block(recs, duration)
    kinds = sorted({r.kind for r in recs})
    if len(kinds) > 1:
        out["per_kind"] = {k: _block([r for r in recs if r.kind == k], duration) for k in kinds}
    return out
