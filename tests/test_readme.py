"""The README's examples work as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fleetsched.core.config import parse_scenario
from fleetsched.core.request import Request
from fleetsched.policies import routing
from fleetsched.sim.run import simulate

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


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
    # Two long prompts first: each goes to an idle instance (ties at random), and the third
    # request avoids both busy instances.
    reqs = [Request(0, 0.0, 8000, 50), Request(1, 0.0, 6000, 50), Request(2, 0.0, 100, 5)]
    recs = simulate(sc, requests=reqs).records
    assert sorted(r.instance for r in recs) == [0, 1, 2]


def test_add_a_policy_snippet_passes_lint_and_names_the_registry_line(tmp_path: Path) -> None:
    (code,) = [b for b in blocks("python") if "class ShortestPrefill" in b]
    (registry,) = [b for b in blocks("python") if "ROUTERS = {" in b]
    assert '"shortest_prefill": ShortestPrefill' in registry
    assert "from fleetsched.policies.routing.shortest_prefill import ShortestPrefill" in registry
    f = tmp_path / "shortest_prefill.py"
    f.write_text(code)
    ruff = [sys.executable, "-m", "ruff"]
    cfg = ["--config", str(ROOT / "pyproject.toml")]
    for cmd in (["check", *cfg, str(f)], ["format", "--check", "--diff", *cfg, str(f)]):
        p = subprocess.run([*ruff, *cmd], capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stdout + p.stderr


def test_tour_says_where_the_traces_come_from_and_what_to_use_without_them() -> None:
    tour = README.split("## A tour of the commands", 1)[1].split("### ", 1)[0]
    assert "../shared/traces/" in tour and "(#traces)" in tour
    assert "fleetsched trace synth -o chat.jsonl" in tour
    traces = README.split("## Traces", 1)[1]
    for repo in ("Azure/AzurePublicDataset", "kvcache-ai/Mooncake", "microsoft/vidur"):
        assert f"https://github.com/{repo}" in traces


def test_error_examples_are_what_the_cli_prints(tmp_path: Path) -> None:
    example = README.split("```console\n$ fleetsched simulate --scenario s.yaml\n", 1)[1]
    lines = example.split("```", 1)[0].splitlines()
    s = tmp_path / "s.yaml"
    s.write_text(  # the misspelt parameter on line 7
        "workload:\n  synthetic: {num_requests: 10}\npolicies:\n  router:\n"
        "    name: cache_aware\n    params:\n      cache_treshold: 0.3\n"
    )
    for cmd, expected in ((["--scenario", str(s)], lines[0]), (lines[1].split()[3:], lines[2])):
        p = subprocess.run(
            [sys.executable, "-c", "from fleetsched.cli.app import main; main()", "simulate", *cmd],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert p.returncode == 2
        assert p.stderr.replace(str(s), "s.yaml").startswith(expected.split("...")[0])
