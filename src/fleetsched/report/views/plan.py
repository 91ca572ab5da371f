"""The ``plan`` frontier: each candidate fleet's cost against each SLO metric, the bound
dashed, the chosen fleet starred. One line per (GPU, TP), through its replica counts."""

from __future__ import annotations

from typing import Any

from fleetsched.report.data import Plan, PlanCandidate, ReportData
from fleetsched.report.views.common import View, base_layout, esc, html_table, line_style, subplots


def metric(c: PlanCandidate, path: str) -> float:
    """The SLO metric at ``path`` in display units: ms for latencies, % for attainment."""
    v: Any = c.summary
    for k in path.split("."):
        v = (v or {}).get(k)
    return float("nan") if v is None else float(v) * scale(path)


def scale(path: str) -> float:
    return 1000.0 if "." in path else 100.0


def unit(path: str) -> str:
    return "ms" if "." in path else "%"


def title(path: str) -> str:
    """``ttft_s.p99`` -> ``TTFT p99``; ``slo_attainment`` -> ``SLO attainment``."""
    metric, _, stat = path.partition(".")
    if not stat:
        return metric.replace("slo_", "SLO ").replace("_", " ")
    return f"{metric.removesuffix('_s').upper()} {stat}"


def _figure(plan: Plan) -> Any:
    paths = list(plan.slo)
    fig = subplots(
        rows=1, cols=len(paths), subplot_titles=[f"{title(p)} ({unit(p)})" for p in paths]
    )
    kinds: dict[tuple[str, int], list[PlanCandidate]] = {}
    for c in plan.candidates:
        kinds.setdefault((c.gpu, c.tp), []).append(c)
    for j, ((gpu, tp), cands) in enumerate(kinds.items()):
        cands = sorted(cands, key=lambda c: c.replicas)
        style = line_style(j)
        name = f"{gpu} TP{tp}"
        for col, path in enumerate(paths, start=1):
            fig.add_scatter(
                x=[c.cost_per_hour for c in cands],
                y=[metric(c, path) for c in cands],
                text=[c.fleet for c in cands],
                mode="lines+markers",
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                line={**style, "width": 1.5},
                marker={
                    "color": style["color"],
                    "size": 9,
                    "symbol": ["circle" if c.meets_slo else "circle-open" for c in cands],
                },
                hovertemplate=f"%{{text}}<br>$%{{x:.2f}}/h<br>%{{y:.1f}} {unit(path)}"
                "<extra></extra>",
                row=1,
                col=col,
            )
    costs = [c.cost_per_hour for c in plan.candidates]
    for col, path in enumerate(paths, start=1):
        # The bound as a line trace (a shape's y on a log axis would need log10 values).
        fig.add_scatter(
            x=[min(costs), max(costs)],
            y=[plan.slo[path] * scale(path)] * 2,
            mode="lines",
            name="SLO bound",
            legendgroup="bound",
            showlegend=col == 1,
            line={"dash": "dash", "color": "#444", "width": 1.5},
            hovertemplate=f"SLO bound {plan.slo[path] * scale(path):g} {unit(path)}<extra></extra>",
            row=1,
            col=col,
        )
        if plan.choice is not None:
            fig.add_scatter(
                x=[plan.choice.cost_per_hour],
                y=[metric(plan.choice, path)],
                text=[plan.choice.fleet],
                mode="markers",
                name=f"chosen: {plan.choice.fleet}",
                legendgroup="choice",
                showlegend=col == 1,
                marker={"symbol": "star", "size": 20, "color": "gold", "line": {"width": 1.5}},
                hovertemplate=f"chosen: %{{text}}<br>$%{{x:.2f}}/h<br>%{{y:.1f}} {unit(path)}"
                "<extra></extra>",
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="cost ($ per hour)")
    for col, path in enumerate(paths, start=1):
        if unit(path) == "ms":  # latencies span decades; attainment stays linear
            fig.update_yaxes(type="log", row=1, col=col)
    base_layout(fig)
    return fig


def build(data: ReportData) -> list[View]:
    views = []
    for n, plan in enumerate(data.plans):
        if not plan.candidates:
            continue
        rows = [
            [
                c.fleet,
                f"{c.cost_per_hour:,.2f}",
                *(f"{metric(c, p):,.1f}" for p in plan.slo),
                "yes" if c.meets_slo else "no",
            ]
            for c in sorted(plan.candidates, key=lambda c: c.cost_per_hour)
        ]
        table = html_table(
            ["fleet", "$ / hour", *(f"{title(p)} {unit(p)}" for p in plan.slo), "meets SLO"], rows
        )
        chosen = (
            f"<p>Chosen: <b>{esc(plan.choice.fleet)}</b> at ${plan.choice.cost_per_hour:,.2f}"
            " per hour.</p>"
            if plan.choice is not None
            else "<p>No candidate meets every SLO clause.</p>"
        )
        note = (
            "Filled markers meet every SLO clause, open ones miss at least one; the dashed"
            " line is the bound."
        )
        views.append(
            View(
                f"plan-{n}", f"Plan, cost vs SLO: {plan.name}", _figure(plan), note, chosen + table
            )
        )
    return views
