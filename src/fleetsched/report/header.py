"""The top of the page: what was run (scenario, cluster, policies, workload, seed) and the
summary table, as HTML."""

from __future__ import annotations

from typing import Any

from fleetsched.metrics.table import COMPARE_CAPTION, compare_rows
from fleetsched.report.data import ReportData
from fleetsched.report.views.common import esc, html_table

#: Columns of the page's summary table (``metrics.table.COMPARE_COLUMNS`` names).
SUMMARY_COLUMNS = (
    "ttft_p50",
    "ttft_p99",
    "tpot_p50",
    "tpot_p99",
    "e2e_p50",
    "e2e_p99",
    "throughput",
    "goodput",
    "slo",
    "prefix_hit",
    "load_cov",
    "preempt",
    "migr",
)
#: Headers the terminal table hyphenates to fit 80 columns, in full.
LONG_HEADERS = {
    "throughput": "throughput",
    "goodput": "goodput",
    "preempt": "preemptions",
    "migr": "migrations",
}


def _distinct(values: list[str]) -> str:
    """The different values, in order of first appearance, `` | `` between them."""
    return " | ".join(dict.fromkeys(v for v in values if v)) or "-"


def _cluster(sc: dict[str, Any]) -> str:
    groups = sc.get("cluster") or []
    n = sum(int(g.get("count", 1)) for g in groups)
    parts = [
        f"{g.get('name', '?')}: {g.get('count', 1)} × {g.get('gpu', '?')} TP{g.get('tp', 1)}"
        + ("" if g.get("role", "mixed") == "mixed" else f" ({g['role']})")
        for g in groups
    ]
    return f"{n} instances ({'; '.join(parts)})"


def _workload(sc: dict[str, Any]) -> str:
    wl = sc.get("workload") or {}
    if wl.get("trace"):
        text = f"trace {wl['trace']}"
    elif wl.get("synthetic"):
        syn = wl["synthetic"]
        arr = syn.get("arrival") or {}
        text = (
            f"synthetic: {syn.get('num_requests', 0):,} requests, {arr.get('kind', '?')}"
            f" {arr.get('rate', '?')} /s"
        )
        turns = (syn.get("sessions") or {}).get("turns_mean", 1)
        if turns and turns > 1:
            text += f", {turns:g} turns per session"
        tenants = syn.get("tenants") or []
        if len(tenants) > 1:
            text += f", tenants {', '.join(t.get('name', '?') for t in tenants)}"
    else:
        return "-"
    tf = wl.get("transforms") or {}
    changes = [
        label.format(tf[k])
        for k, label, default in (
            ("rate_scale", "rate × {:g}", 1.0),
            ("first_n", "first {:,}", None),
            ("start_s", "from {:g} s", None),
            ("end_s", "until {:g} s", None),
            ("sample", "sampled {:g}", None),
        )
        if tf.get(k) not in (None, default)
    ]
    return text + (f" ({', '.join(changes)})" if changes else "")


def _slos(sc: dict[str, Any]) -> str:
    classes = sc.get("slo_classes") or {}
    return "; ".join(
        f"{name}: TTFT ≤ {c.get('ttft_s', 0) * 1000:g} ms, TPOT ≤ {c.get('tpot_s', 0) * 1000:g} ms"
        for name, c in classes.items()
    )


def scenario_rows(data: ReportData) -> list[tuple[str, str]]:
    """(label, value) lines describing the runs' scenarios; a field that differs between runs
    lists every value."""
    targets = [
        str(r.summary["bench"].get("target", ""))
        for r in data.runs
        if isinstance(r.summary.get("bench"), dict)
    ]
    live = [("live target", _distinct(targets))] if targets else []
    scs = [r.scenario for r in data.runs if r.scenario is not None]
    if not scs:
        return live

    def pol(sc: dict[str, Any], kind: str) -> str:
        return str(((sc.get("policies") or {}).get(kind) or {}).get("name", ""))

    groups = [g for sc in scs for g in sc.get("cluster") or []]
    return [
        ("scenario", _distinct([str(sc.get("name", "")) for sc in scs])),
        ("cluster", _distinct([_cluster(sc) for sc in scs])),
        ("model", _distinct([str(g.get("model", "")) for g in groups])),
        ("GPU", _distinct([str(g.get("gpu", "")) for g in groups])),
        ("router", _distinct([pol(sc, "router") for sc in scs])),
        (
            "engine policies",
            _distinct(
                [
                    f"admission {pol(sc, 'admission')}, ordering {pol(sc, 'ordering')},"
                    f" preemption {pol(sc, 'preemption')}"
                    for sc in scs
                ]
            ),
        ),
        ("workload", _distinct([_workload(sc) for sc in scs])),
        ("seed", _distinct([str(sc.get("seed", "")) for sc in scs])),
        ("SLO classes", _distinct([_slos(sc) for sc in scs])),
        *live,
    ]


def header_html(data: ReportData) -> str:
    rows = scenario_rows(data)
    parts = []
    if rows:
        items = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        parts.append(f'<table class="scenario">{items}</table>')
    elif data.runs:
        parts.append("<p>The inputs do not record their scenario.</p>")
    if data.runs:
        cols, cells = compare_rows({r.label: r.summary for r in data.runs}, SUMMARY_COLUMNS)
        headers = [
            LONG_HEADERS.get(name, c.header.replace("\n", " "))
            for name, c in zip(SUMMARY_COLUMNS, cols, strict=True)
        ]
        req = [f"{int(r.summary.get('requests') or 0):,}" for r in data.runs]
        table = html_table(
            ["run", "requests", *headers],
            [[row[0], n, *row[1:]] for row, n in zip(cells, req, strict=True)],
        )
        caption = f'<p class="note">{esc(COMPARE_CAPTION)}</p>'
        parts.append(f'<h2 id="summary">Summary</h2><div class="scroll">{table}</div>{caption}')
    sources = [s for r in data.runs for s in r.sources]
    if sources:
        parts.append(
            '<p class="note">Inputs: '
            + ", ".join(f"<code>{esc(s)}</code>" for s in dict.fromkeys(sources))
            + "</p>"
        )
    return "\n".join(parts)
