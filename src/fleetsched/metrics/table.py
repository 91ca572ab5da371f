"""Terminal tables (rich) of one summary or of several side by side.

Latencies are shown in milliseconds; an undefined value (NaN or missing) shows as ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.table import Table

DASH = "-"


def _num(x: Any) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return math.nan
    return f


def fmt_ms(seconds: Any) -> str:
    """Seconds -> ``"123.4"`` milliseconds, ``-`` when undefined."""
    f = _num(seconds)
    return DASH if not math.isfinite(f) else f"{f * 1000:.1f}"


def fmt_num(x: Any, digits: int = 2) -> str:
    f = _num(x)
    return DASH if not math.isfinite(f) else f"{f:,.{digits}f}"


def fmt_pct(x: Any) -> str:
    """Fraction -> ``"97.5%"``, ``-`` when undefined."""
    f = _num(x)
    return DASH if not math.isfinite(f) else f"{f * 100:.1f}%"


def fmt_int(x: Any) -> str:
    f = _num(x)
    return DASH if not math.isfinite(f) else f"{int(f):,}"


def _dist(summary: Mapping[str, Any], key: str, stat: str) -> Any:
    return (summary.get(key) or {}).get(stat)


def summary_table(summary: Mapping[str, Any], title: str | None = "Summary") -> Table:
    """One summary as a two-part table: latency mean/p50/p99 in ms, then scalar metrics.

    Scalar metrics (throughput, goodput, attainment, …) sit in the "mean / value" column.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("mean / value", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    for label, key in (
        ("TTFT (ms)", "ttft_s"),
        ("TPOT (ms)", "tpot_s"),
        ("E2E (ms)", "e2e_s"),
        ("queue (ms)", "queue_s"),
    ):
        table.add_row(label, *(fmt_ms(_dist(summary, key, s)) for s in ("mean", "p50", "p99")))
    table.add_section()
    done, total = fmt_int(summary.get("completed")), fmt_int(summary.get("requests"))
    scalars = (
        ("requests (completed/all)", f"{done}/{total}"),
        ("throughput (req/s)", fmt_num(summary.get("throughput_req_s"))),
        ("throughput (output tok/s)", fmt_num(summary.get("throughput_tok_s"), 1)),
        ("goodput (req/s)", fmt_num(summary.get("goodput_req_s"))),
        ("SLO attainment", fmt_pct(summary.get("slo_attainment"))),
        ("prefix hit rate", fmt_pct(summary.get("prefix_hit_rate"))),
        ("preemptions", fmt_int(summary.get("preemptions"))),
        ("load CoV", fmt_num(summary.get("load_cov"), 3)),
    )
    for label, value in scalars:
        table.add_row(label, value, "", "")
    return table


_COMPARE_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    # (header, summary key, dist stat or None, format)
    ("TTFT p50 ms", "ttft_s", "p50", "ms"),
    ("TTFT p99 ms", "ttft_s", "p99", "ms"),
    ("TPOT p50 ms", "tpot_s", "p50", "ms"),
    ("TPOT p99 ms", "tpot_s", "p99", "ms"),
    ("E2E p50 ms", "e2e_s", "p50", "ms"),
    ("E2E p99 ms", "e2e_s", "p99", "ms"),
    ("goodput req/s", "goodput_req_s", None, "num"),
    ("SLO att.", "slo_attainment", None, "pct"),
    ("prefix hit", "prefix_hit_rate", None, "pct"),
    ("load CoV", "load_cov", None, "cov"),
    ("preempt", "preemptions", None, "int"),
    ("migr", "migrations", None, "int"),
)

_FORMATTERS = {
    "ms": fmt_ms,
    "num": fmt_num,
    "pct": fmt_pct,
    "cov": lambda x: fmt_num(x, 3),
    "int": fmt_int,
}


def compare_rows(
    summaries: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the comparison table (one row per summary, named by
    its key first); the terminal table and the HTML report both show these."""
    headers = ["policy", *(header for header, *_ in _COMPARE_COLUMNS)]
    rows = []
    for name, s in summaries.items():
        cells = [str(name)]
        for _, key, stat, kind in _COMPARE_COLUMNS:
            value = _dist(s, key, stat) if stat else s.get(key)
            cells.append(_FORMATTERS[kind](value))
        rows.append(cells)
    return headers, rows


def compare_table(summaries: Mapping[str, Mapping[str, Any]], title: str = "Comparison") -> Table:
    """One row per policy (the mapping's keys, in the mapping's order)."""
    table = Table(title=title, title_justify="left")
    headers, rows = compare_rows(summaries)
    table.add_column(headers[0], no_wrap=True, min_width=16)
    for header in headers[1:]:
        table.add_column(header, justify="right")
    for cells in rows:
        table.add_row(*cells)
    return table
