"""SLO expressions for planning: ``'ttft_p99<2s,tpot_p99<100ms'``.

A clause is ``METRIC_STAT < VALUE[unit]`` (``<`` or ``<=``): METRIC one of the summary's
latency distributions (``ttft``, ``tpot``, ``e2e``, ``queue``), STAT one of ``mean``,
``p50``, ``p90``, ``p95``, ``p99``, ``max``; units ``s`` (default) or ``ms``. Or
``attainment>=0.99`` on the per-request SLO attainment (``>`` or ``>=``). A fleet meets an
SLO when every request completed and every clause holds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from fleetsched.errors import InputError

METRICS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s", "queue": "queue_s"}
STATS = ("mean", "p50", "p90", "p95", "p99", "max")
_CLAUSE = re.compile(
    r"^\s*(?P<name>[a-z0-9_]+)\s*(?P<op><=|>=|<|>)\s*(?P<num>[0-9.eE+-]+)\s*(?P<unit>ms|s)?\s*$"
)


@dataclass(frozen=True, slots=True)
class Clause:
    text: str
    metric: str  # summary key, e.g. "ttft_s", or "slo_attainment"
    stat: str | None  # "p99" etc.; None for attainment
    op: str
    value: float

    @property
    def label(self) -> str:
        return self.text.split("<")[0].split(">")[0].strip()

    def observed(self, summary: dict[str, Any]) -> float:
        if self.stat is None:
            x = summary.get(self.metric)
        else:
            x = (summary.get(self.metric) or {}).get(self.stat)
        return math.nan if x is None else float(x)

    def holds(self, summary: dict[str, Any]) -> bool:
        x = self.observed(summary)
        if math.isnan(x):
            return False
        return {
            "<": x < self.value,
            "<=": x <= self.value,
            ">": x > self.value,
            ">=": x >= self.value,
        }[self.op]


def parse_slo(text: str) -> list[Clause]:
    clauses = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _CLAUSE.match(part)
        if not m:
            raise InputError(f"--slo: cannot read {part.strip()!r} (e.g. 'ttft_p99<2s')")
        name, op, unit = m["name"], m["op"], m["unit"]
        try:
            value = float(m["num"])
        except ValueError:
            raise InputError(f"--slo: {m['num']!r} is not a number in {part.strip()!r}") from None
        if name == "attainment":
            if op not in (">", ">=") or unit or not 0 <= value <= 1:
                raise InputError(f"--slo: use attainment>=FRACTION, got {part.strip()!r}")
            clauses.append(Clause(part.strip(), "slo_attainment", None, op, value))
            continue
        metric, _, stat = name.rpartition("_")
        if metric not in METRICS or stat not in STATS:
            raise InputError(
                f"--slo: unknown metric {name!r} (use {{{','.join(METRICS)}}}_{{{','.join(STATS)}}}"
                " or attainment)"
            )
        if op not in ("<", "<="):
            raise InputError(f"--slo: latency clauses are upper bounds, got {part.strip()!r}")
        clauses.append(
            Clause(part.strip(), METRICS[metric], stat, op, value / 1000 if unit == "ms" else value)
        )
    if not clauses:
        raise InputError("--slo needs at least one clause, e.g. 'ttft_p99<2s'")
    return clauses


def meets(summary: dict[str, Any], clauses: list[Clause]) -> bool:
    """Every request completed and every clause holds."""
    return summary.get("completed") == summary.get("requests") and all(
        c.holds(summary) for c in clauses
    )
