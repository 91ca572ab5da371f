"""``fleetsched place``: place model replicas on GPU nodes, CP-SAT against a greedy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetsched.cli.app import app, console
from fleetsched.errors import InputError
from fleetsched.policies.placement import (
    PlacementResult,
    Problem,
    cpsat_place,
    fragmented_nodes,
    greedy_place,
    load_problem,
    value,
    violations,
)

EXAMPLES = """
Examples:

  fleetsched place --nodes nodes.yaml --deployments deployments.yaml

  fleetsched place --nodes nodes.yaml --deployments deployments.yaml --time-limit 10
  --summary-json placement.json
"""

Opt = typer.Option


def placement_report(problem: Problem, res: PlacementResult) -> dict[str, Any]:
    """A JSON-ready description of one placement: per deployment and per node."""
    a = res.assignment
    bad = violations(problem, a)
    if bad:
        raise RuntimeError(f"internal error: {res.method} broke a constraint: {bad[0]}")
    per_node: dict[str, list[str]] = {n.name: [] for n in problem.nodes}
    for d, dep in enumerate(problem.deployments):
        for n in a[d]:
            if n is not None:
                per_node[problem.nodes[n].name].append(dep.name)
    return {
        "method": res.method,
        "value": value(problem, a),
        "optimal": res.optimal,
        "bound": res.bound,
        "fragmented_nodes": fragmented_nodes(problem, a),
        "fragmentation_optimal": res.fragmentation_optimal,
        "solve_s": res.solve_s,
        "placed": {
            dep.name: sum(n is not None for n in a[d]) for d, dep in enumerate(problem.deployments)
        },
        "nodes": {k: v for k, v in per_node.items() if v},
    }


def compare_placements(
    problem: Problem, time_limit_s: float, seed: int = 0, workers: int = 2
) -> dict[str, Any]:
    """Greedy, then CP-SAT hinted with it; and the verdict between them."""
    g = greedy_place(problem, seed=seed)
    c = cpsat_place(
        problem, time_limit_s=time_limit_s, hint=g.assignment, seed=seed, workers=workers
    )
    gr, cr = placement_report(problem, g), placement_report(problem, c)
    if cr["value"] > gr["value"]:
        verdict = "cpsat placed more"
    elif cr["fragmented_nodes"] < gr["fragmented_nodes"]:
        verdict = "equal value, cpsat fragments less"
    else:
        verdict = "equal"
    return {
        "greedy": gr,
        "cpsat": cr,
        "verdict": verdict,
        "greedy_proved_optimal": c.optimal and cr["value"] == gr["value"],
        "wanted": sum(d.replicas for d in problem.deployments),
    }


@app.command(epilog=EXAMPLES)
def place(
    nodes: Annotated[Path, Opt(help="Nodes YAML: nodes: [{name, gpu, gpus, memory_gb, count}].")],
    deployments: Annotated[
        Path, Opt(help="Deployments YAML: deployments: [...], optional existing: [...].")
    ],
    time_limit: Annotated[float, Opt(help="CP-SAT time limit, seconds.")] = 1.0,
    seed: Annotated[int, Opt(help="Seed of the greedy's tie-breaks and the solver.")] = 0,
    workers: Annotated[int, Opt(help="CP-SAT search workers.")] = 2,
    summary_json: Annotated[Path | None, Opt(help="Write both placements as JSON.")] = None,
) -> None:
    """Place model replicas on nodes with CP-SAT and compare with a kube-scheduler greedy."""
    if time_limit <= 0:
        raise InputError("--time-limit must be > 0")
    problem = load_problem(nodes, deployments)
    out = compare_placements(problem, time_limit, seed, workers)
    t = Table(title=f"{len(problem.nodes)} nodes, {out['wanted']} replicas wanted")
    t.add_column("deployment")
    t.add_column("priority", justify="right")
    t.add_column("GPUs each", justify="right")
    t.add_column("wanted", justify="right")
    t.add_column("greedy", justify="right")
    t.add_column("cpsat", justify="right")
    for dep in sorted(problem.deployments, key=lambda d: -d.priority):
        t.add_row(
            dep.name,
            str(dep.priority),
            str(dep.gpus),
            str(dep.replicas),
            str(out["greedy"]["placed"][dep.name]),
            str(out["cpsat"]["placed"][dep.name]),
        )
    console.print(t)
    g, c = out["greedy"], out["cpsat"]
    proof = "proved optimal" if c["optimal"] else f"not proved optimal in {time_limit:g} s"
    console.print(
        f"greedy: {sum(g['placed'].values())} placed, {g['fragmented_nodes']} fragmented nodes\n"
        f"cpsat:  {sum(c['placed'].values())} placed, {c['fragmented_nodes']} fragmented nodes, "
        f"{proof} ({c['solve_s']:.2f} s)\n"
        f"verdict: {out['verdict']}"
        + ("; the greedy placement is optimal" if out["greedy_proved_optimal"] else ""),
        highlight=False,
    )
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
