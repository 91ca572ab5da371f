"""Placement: the kube-scheduler-like greedy and CP-SAT, on cases with hand-known optima."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.errors import InputError
from fleetsched.policies.placement import (
    build_problem,
    cpsat_place,
    fragmented_nodes,
    greedy_place,
    load_problem,
    value,
    violations,
)
from fleetsched.policies.placement.problem import DeploymentsFile, NodesFile

pytest.importorskip("ortools")

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


def problem(nodes: list[dict], deployments: list[dict], existing: list[dict] | None = None):
    return build_problem(
        NodesFile.model_validate({"nodes": nodes}),
        DeploymentsFile.model_validate({"deployments": deployments, "existing": existing or []}),
    )


def placed(a: list[list[int | None]]) -> list[int]:
    return [sum(n is not None for n in row) for row in a]


def test_greedy_spreads_and_strands_a_big_replica_cpsat_packs_it() -> None:
    # Two 4-GPU nodes; two 2-GPU replicas (higher priority), then one 4-GPU replica.
    # LeastAllocated puts the second 2-GPU replica on the empty node, so the 4-GPU one has
    # nowhere to go; packing both small ones on one node places all three.
    p = problem(
        [{"name": "n", "gpus": 4, "count": 2}],
        [
            {"name": "small", "replicas": 2, "gpus_per_replica": 2, "priority": 1},
            {"name": "big", "replicas": 1, "gpus_per_replica": 4, "priority": 0},
        ],
    )
    g = greedy_place(p, seed=3)
    assert placed(g.assignment) == [2, 0]
    assert sorted(g.assignment[0]) == [0, 1]  # spread: one small replica per node
    c = cpsat_place(p, hint=g.assignment)
    assert placed(c.assignment) == [2, 1] and c.optimal
    assert violations(p, c.assignment) == [] and violations(p, g.assignment) == []
    # Weights: priority 0 is worth 1 per replica, priority 1 is worth (1 + 1) = 2.
    assert value(p, g.assignment) == 4 and value(p, c.assignment) == 5


def test_one_high_priority_replica_outweighs_all_lower_ones() -> None:
    # One 8-GPU node: either the 8-GPU high-priority replica or eight 1-GPU ones.
    p = problem(
        [{"name": "n", "gpus": 8}],
        [
            {"name": "low", "replicas": 8, "gpus_per_replica": 1, "priority": 0},
            {"name": "high", "replicas": 1, "gpus_per_replica": 8, "priority": 5},
        ],
    )
    c = cpsat_place(p)
    assert placed(c.assignment) == [0, 1] and c.optimal
    assert value(p, c.assignment) == 9  # 1 x (8 + 1)


def test_anti_affinity_colocation_existing_and_kinds() -> None:
    p = problem(
        [
            {"name": "h", "gpu": "H100-SXM", "gpus": 8, "count": 3},
            {"name": "l", "gpu": "L40S", "gpus": 4, "memory_gb": 100},
        ],
        [
            # Anti-affinity, and an existing replica already on h-0: at most h-1 and h-2.
            {
                "name": "web",
                "replicas": 3,
                "gpus_per_replica": 2,
                "anti_affinity": True,
                "gpu": "H100-SXM",
            },
            # Only on L40S, 60 GB host memory each: one fits in the 100 - 30 GB left.
            {"name": "emb", "replicas": 2, "gpus_per_replica": 1, "gpu": "L40S", "memory_gb": 60},
            # Only next to a 'web' replica (existing or placed), 80-GB GPUs.
            {
                "name": "side",
                "replicas": 2,
                "gpus_per_replica": 6,
                "colocate_with": "web",
                "gpu_memory_gb": 80,
            },
        ],
        existing=[
            {"name": "web", "node": "h-0", "gpus": 2},
            {"name": "other", "node": "l", "gpus": 1, "memory_gb": 30},
        ],
    )
    c = cpsat_place(p)
    assert c.optimal and violations(p, c.assignment) == []
    assert placed(c.assignment) == [2, 1, 2]
    names = [n.name for n in p.nodes]
    assert sorted(names[n] for n in c.assignment[0] if n is not None) == ["h-1", "h-2"]
    assert [names[n] for n in c.assignment[1] if n is not None] == ["l"]
    # 'side' needs 6 GPUs next to web: h-0 has 6 free (existing web), h-1/h-2 6 after web.
    assert {names[n] for n in c.assignment[2] if n is not None} <= {"h-0", "h-1", "h-2"}
    g = greedy_place(p)
    assert violations(p, g.assignment) == [] and value(p, g.assignment) <= value(p, c.assignment)


def test_fragmentation_phase_keeps_value_and_strands_fewer_gpus() -> None:
    # Two 7-GPU nodes, two 3-GPU replicas and one 2-GPU replica (the smallest: 2 GPUs).
    # Both 3-GPU replicas on one node leave 1 stranded GPU there (fragmented);
    # 3 + 2 and 3 leave 2 and 4 free: nothing stranded.
    p = problem(
        [{"name": "n", "gpus": 7, "count": 2}],
        [
            {"name": "big", "replicas": 2, "gpus_per_replica": 3},
            {"name": "small", "replicas": 1, "gpus_per_replica": 2},
        ],
    )
    bad = [[0, 0], [1]]
    assert violations(p, bad) == [] and fragmented_nodes(p, bad) == 1
    c = cpsat_place(p, hint=bad, time_limit_s=5)
    assert value(p, c.assignment) == value(p, bad)
    assert fragmented_nodes(p, c.assignment) == 0 and c.fragmentation_optimal


def test_greedy_ties_break_at_random_from_the_seed() -> None:
    p = problem([{"name": "n", "gpus": 8, "count": 6}], [{"name": "a", "gpus_per_replica": 8}])
    picks = {greedy_place(p, seed=s).assignment[0][0] for s in range(30)}
    assert len(picks) > 1  # not always the lowest index
    assert greedy_place(p, seed=4).assignment == greedy_place(p, seed=4).assignment


def test_greedy_prefers_the_least_allocated_node() -> None:
    # n-0 has 6 of 8 GPUs taken by an existing replica: a 1-GPU replica goes to n-1.
    p = problem(
        [{"name": "n", "gpus": 8, "count": 2}],
        [{"name": "a", "gpus_per_replica": 1}],
        existing=[{"name": "x", "node": "n-0", "gpus": 6}],
    )
    assert greedy_place(p, seed=0).assignment == [[1]]


@st.composite
def packable(draw: st.DrawFn) -> tuple[list[dict], list[dict]]:
    """Nodes whose GPUs are split exactly into replicas: a full placement exists."""
    n_nodes = draw(st.integers(2, 4))
    sizes = []
    for _ in range(n_nodes):
        left = 8
        while left:
            s = draw(st.sampled_from([x for x in (1, 2, 3, 4, 6, 8) if x <= left]))
            sizes.append(s)
            left -= s
    by_size: dict[int, int] = {}
    for s in sizes:
        by_size[s] = by_size.get(s, 0) + 1
    prio = draw(st.lists(st.integers(0, 2), min_size=len(by_size), max_size=len(by_size)))
    deps = [
        {"name": f"d{s}", "replicas": k, "gpus_per_replica": s, "priority": p}
        for (s, k), p in zip(sorted(by_size.items()), prio, strict=True)
    ]
    return [{"name": "n", "gpus": 8, "count": n_nodes}], deps


@settings(max_examples=25, deadline=None)
@given(packable(), st.integers(0, 3))
def test_cpsat_places_everything_when_a_full_placement_exists(case, seed: int) -> None:
    nodes, deps = case
    p = problem(nodes, deps)
    g = greedy_place(p, seed=seed)
    c = cpsat_place(p, hint=g.assignment, time_limit_s=5, fragmentation=False)
    assert violations(p, g.assignment) == [] and violations(p, c.assignment) == []
    assert placed(c.assignment) == [d["replicas"] for d in deps]
    assert c.optimal and value(p, c.assignment) >= value(p, g.assignment)


def test_greedy_spreads_the_fours_and_strands_the_sixes() -> None:
    # 3 x 8 GPUs; 4-GPU replicas (prio 2) x3, 6-GPU (prio 1) x2, 2-GPU (prio 0) x2.
    # Optimum (by hand): 4+4 on one node, 6+2 and 4+2 on the others -> all but one six
    # (the 4s and 6s alone need 24 of the 24 GPUs, leaving nothing for the 2s... and a node
    # holding a 6 has room for a 2 only, so at most one six fits next to three fours).
    p = problem(
        [{"name": "n", "gpus": 8, "count": 3}],
        [
            {"name": "four", "replicas": 3, "gpus_per_replica": 4, "priority": 2},
            {"name": "six", "replicas": 2, "gpus_per_replica": 6, "priority": 1},
            {"name": "two", "replicas": 2, "gpus_per_replica": 2, "priority": 0},
        ],
    )
    g = greedy_place(p, seed=0)
    c = cpsat_place(p, hint=g.assignment, time_limit_s=5)
    # LeastAllocated spreads the three 4s, one per node (4 free each): no six fits.
    assert placed(g.assignment) == [3, 0, 2]
    assert placed(c.assignment) == [3, 1, 2] and c.optimal


def test_errors_name_the_file_and_field(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("nodes:\n  - {name: n, gpus: 8, count: 2}\n")
    deps = tmp_path / "deps.yaml"
    deps.write_text(
        "deployments:\n  - {name: a, gpus_per_replica: 2}\n"
        "existing:\n  - {name: a, node: nope, gpus: 1}\n"
    )
    with pytest.raises(InputError, match=r"deps.yaml: existing.0.node: no node named 'nope'"):
        load_problem(nodes, deps)
    deps.write_text("deployments:\n  - {name: a, gpus_per_replica: 16}\n")
    with pytest.raises(InputError, match=r"deps.yaml: deployments.0 \(a\): no node can ever"):
        load_problem(nodes, deps)
    deps.write_text("deployments:\n  - name: a\n    gpus_per_replica: 2\n    colour: red\n")
    with pytest.raises(InputError, match=r"deps.yaml:4: deployments.0.colour"):
        load_problem(nodes, deps)
    p = subprocess.run(
        [*CLI, "place", "--nodes", str(nodes), "--deployments", str(deps)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "colour" in p.stderr


def test_cli_place_reports_both_and_writes_json(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("nodes:\n  - {name: n, gpus: 4, count: 2}\n")
    deps = tmp_path / "deps.yaml"
    deps.write_text(
        "deployments:\n"
        "  - {name: small, replicas: 2, gpus_per_replica: 2, priority: 1}\n"
        "  - {name: big, replicas: 1, gpus_per_replica: 4}\n"
    )
    out = tmp_path / "p.json"
    p = subprocess.run(
        [
            *CLI,
            "place",
            "--nodes",
            str(nodes),
            "--deployments",
            str(deps),
            "--summary-json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "verdict: cpsat placed more" in p.stdout
    js = json.loads(out.read_text())
    assert js["greedy"]["placed"] == {"small": 2, "big": 0}
    assert js["cpsat"]["placed"] == {"small": 2, "big": 1} and js["cpsat"]["optimal"]
