"""Terminal tables (rich) of one summary or of several side by side.

Latencies are shown in milliseconds; an undefined value (NaN or missing) shows as ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from fleetsched.errors import InputError

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


def _get(summary: Mapping[str, Any], key: str) -> Any:
    """``summary[key]``; a dotted key walks nested sections (``workflows.e2e_s``)."""
    node: Any = summary
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _dist(summary: Mapping[str, Any], key: str, stat: str) -> Any:
    return (_get(summary, key) or {}).get(stat)


def summary_table(summary: Mapping[str, Any], title: str | None = "Summary") -> Table:
    """One summary as a two-part table: latency mean/p50/p99 in ms, then scalar metrics.

    Scalar metrics (throughput, goodput, attainment, …) sit in the "mean / value" column.
    """
    table = Table(title=None if title is None else Text(title), title_justify="left")
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
        ("rejected (can never run)", fmt_int(summary.get("rejected", 0))),
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
    acc = _num(summary.get("accuracy"))
    if math.isfinite(acc):  # multi-model workloads: judged answers and metered energy
        table.add_row("accuracy (judged)", fmt_pct(acc), "", "")
        table.add_row(
            "energy per request (J)", fmt_num(summary.get("energy_per_request_j"), 1), "", ""
        )
        table.add_row(
            "fleet energy (kJ)", fmt_num(_num(summary.get("fleet_energy_j")) / 1e3, 1), "", ""
        )
    wf = summary.get("workflows")
    if wf:
        table.add_section()
        e2e = wf.get("e2e_s") or {}
        table.add_row("workflow E2E (s)", *(fmt_num(e2e.get(s), 2) for s in ("mean", "p50", "p99")))
        done, total = fmt_int(wf.get("completed")), fmt_int(wf.get("workflows"))
        table.add_row("workflows (completed/all)", f"{done}/{total}", "", "")
        table.add_row(
            "workflow deadline attainment", fmt_pct(wf.get("deadline_attainment")), "", ""
        )
    return table


@dataclass(frozen=True, slots=True)
class Column:
    """A column of :func:`compare_table`: a header (two short lines) and where its value is."""

    header: str
    key: str
    stat: str | None
    kind: str


def fmt_ms_short(seconds: Any) -> str:
    """Seconds -> milliseconds, one decimal below 100 ms, none above (``7,025``)."""
    f = _num(seconds)
    if not math.isfinite(f):
        return DASH
    ms = f * 1000
    return f"{ms:.1f}" if abs(ms) < 100 else f"{ms:,.0f}"


#: Every column :func:`compare_table` can show, by the name ``--columns`` takes.
COMPARE_COLUMNS: dict[str, Column] = {
    "ttft_mean": Column("TTFT\nmean", "ttft_s", "mean", "ms"),
    "ttft_p50": Column("TTFT\np50", "ttft_s", "p50", "ms"),
    "ttft_p99": Column("TTFT\np99", "ttft_s", "p99", "ms"),
    "tpot_p50": Column("TPOT\np50", "tpot_s", "p50", "ms"),
    "tpot_p99": Column("TPOT\np99", "tpot_s", "p99", "ms"),
    "e2e_p50": Column("E2E\np50", "e2e_s", "p50", "ms"),
    "e2e_p99": Column("E2E\np99", "e2e_s", "p99", "ms"),
    "queue_p99": Column("queue\np99", "queue_s", "p99", "ms"),
    "throughput": Column("thru-\nput", "throughput_req_s", None, "num"),
    "tok_s": Column("output\ntok/s", "throughput_tok_s", None, "num0"),
    "goodput": Column("good-\nput", "goodput_req_s", None, "num"),
    "slo": Column("SLO\natt.", "slo_attainment", None, "pct"),
    "prefix_hit": Column("prefix\nhit", "prefix_hit_rate", None, "pct"),
    "load_cov": Column("load\nCoV", "load_cov", None, "cov"),
    "preempt": Column("pre-\nempt", "preemptions", None, "int"),
    "migr": Column("mig-\nrate", "migrations", None, "int"),
    "rejected": Column("re-\nject", "rejected", None, "int"),
    "wf_e2e_p50": Column("wf E2E\np50", "workflows.e2e_s", "p50", "ms"),
    "wf_e2e_p99": Column("wf E2E\np99", "workflows.e2e_s", "p99", "ms"),
    "wf_deadline": Column("wf dl\natt.", "workflows.deadline_attainment", None, "pct"),
    "accuracy": Column("accu-\nracy", "accuracy", None, "pct"),
    "energy": Column("J /\nreq", "energy_per_request_j", None, "num"),
}

#: Columns shown by default: fit in 80 columns with ten routers.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "ttft_p50",
    "ttft_p99",
    "tpot_p50",
    "e2e_p99",
    "goodput",
    "slo",
    "prefix_hit",
    "preempt",
)

_FORMATTERS = {
    "ms": fmt_ms_short,
    "num": fmt_num,
    "num0": lambda x: fmt_num(x, 0),
    "pct": fmt_pct,
    "cov": lambda x: fmt_num(x, 3),
    "int": fmt_int,
}

COMPARE_CAPTION = "times in ms; throughput and goodput in req/s"


def compare_rows(
    summaries: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = DEFAULT_COLUMNS
) -> tuple[list[Column], list[list[str]]]:
    """The columns named (keys of :data:`COMPARE_COLUMNS`) and, per entry of ``summaries``
    in its order, its name then the formatted cells: what the terminal table and the HTML
    report both show."""
    unknown = [c for c in columns if c not in COMPARE_COLUMNS]
    if unknown:
        known = ", ".join(COMPARE_COLUMNS)
        raise InputError(f"unknown column {unknown[0]!r} (known: {known})", "--columns")
    cols = [COMPARE_COLUMNS[c] for c in columns]
    rows = []
    for name, s in summaries.items():
        cells = [str(name)]
        for col in cols:
            value = _dist(s, col.key, col.stat) if col.stat else s.get(col.key)
            cells.append(_FORMATTERS[col.kind](value))
        rows.append(cells)
    return cols, rows


def compare_table(
    summaries: Mapping[str, Mapping[str, Any]],
    title: str = "Comparison",
    columns: Sequence[str] = DEFAULT_COLUMNS,
    label: str = "policy",
) -> Table:
    """One row per entry of ``summaries`` (in its order), one column per name in ``columns``
    (keys of :data:`COMPARE_COLUMNS`); ``label`` heads the first column. Cells never get
    cut short: a table wider than the console folds its cells."""
    cols, rows = compare_rows(summaries, columns)
    table = Table(
        title=Text(title),
        title_justify="left",
        caption=COMPARE_CAPTION,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,  # two spaces between columns: ten policies fit in 80
    )
    table.add_column(Text(label), overflow="fold")
    for col in cols:
        table.add_column(col.header, justify="right", overflow="fold")
    for cells in rows:
        table.add_row(*(Text(c) for c in cells))
    return table
