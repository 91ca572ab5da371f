"""docs/live.md says what the code does: metric names, command options, the example scenario."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetsched.cli.app import _register, app
from fleetsched.core.config import InstanceGroup, load_scenario
from fleetsched.emulator import build_emulator

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "live.md").read_text()


def test_every_documented_metric_is_exported_and_every_vllm_one_documented() -> None:
    emu = build_emulator(InstanceGroup())
    text = generate_latest(emu.metrics.registry).decode()
    exported = set()
    for fam in text_string_to_metric_families(text):
        exported.add(fam.name)
        exported.update(s.name for s in fam.samples)
    documented = set(re.findall(r"`((?:vllm|fleetsched):[a-z0-9_]+)", DOC))
    assert documented, "no metric names found in docs/live.md"
    assert documented <= exported, documented - exported
    families = {fam.name for fam in text_string_to_metric_families(text)}
    missing = {f for f in families if not any(d.startswith(f) for d in documented)}
    assert not missing, missing


def test_documented_options_exist() -> None:
    _register()
    cmd = typer.main.get_command(app)
    for name in ("emulate", "bench", "fidelity"):
        sub = cmd.commands[name]  # type: ignore[attr-defined]
        opts = {o for p in sub.params for o in (*p.opts, *p.secondary_opts)}
        block = DOC.split(f"```\nfleetsched {name} --", 1)[1].split("```", 1)[0]
        for opt in re.findall(r"--[a-z][a-z-]+", f"--{block}"):
            assert opt in opts, (name, opt)


def test_the_example_scenario_is_one_instance() -> None:
    sc = load_scenario(ROOT / "examples" / "equivalence-1xA10G.yaml")
    assert [g.count for g in sc.cluster] == [1]
    assert sc.workload.synthetic is not None and sc.workload.synthetic.num_requests == 240
