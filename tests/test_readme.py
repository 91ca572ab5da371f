"""The README's examples work as printed."""

from __future__ import annotations

import re
from pathlib import Path

from fleetsched.core.config import parse_scenario
from fleetsched.core.request import Request
from fleetsched.policies import routing
from fleetsched.sim.run import simulate

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_is_two_commands() -> None:
    qs = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in qs.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_scenario_example_is_valid() -> None:
    (yaml_text,) = blocks("yaml")
    sc = parse_scenario(yaml_text, "README.md")
    assert sc.policies.router.name == "prefix_load" and sc.view_refresh_s == 0.05
    assert sum(g.count for g in sc.cluster) == 8


def test_add_a_policy_example_runs(monkeypatch) -> None:
    (code,) = [b for b in blocks("python") if "class ShortestPrefill" in b]
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    monkeypatch.setitem(routing.ROUTERS, "shortest_prefill", ns["ShortestPrefill"])
    sc = parse_scenario(
        "workload: {synthetic: {num_requests: 50}}\n"
        "cluster: [{count: 3}]\npolicies: {router: {name: shortest_prefill}}\n"
    )
    # Two long prompts first: the third request avoids both busy instances.
    reqs = [Request(0, 0.0, 8000, 50), Request(1, 0.0, 6000, 50), Request(2, 0.0, 100, 5)]
    recs = simulate(sc, requests=reqs).records
    assert [r.instance for r in recs] == [0, 1, 2]
