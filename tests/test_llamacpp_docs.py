"""docs/llamacpp.md's examples work as printed."""

from __future__ import annotations

import re
from pathlib import Path

from fleetsched.core.config import parse_scenario
from fleetsched.perf.ubatch import parse_llamacpp_profile
from fleetsched.sim.run import simulate

DOC = (Path(__file__).resolve().parents[1] / "docs" / "llamacpp.md").read_text()


def test_scenario_and_profile_examples() -> None:
    scenario, profile = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    sc = parse_scenario(scenario, "docs/llamacpp.md")
    res = simulate(sc)
    assert res.summary["completed"] == 200
    assert res.summary["prefix_hit_rate"] > 0  # the shared system prompt is reused
    p = parse_llamacpp_profile(profile, "docs/llamacpp.md")
    assert p.model == "gemma-3-270m" and len(p.small_ubatch_s) == 4
