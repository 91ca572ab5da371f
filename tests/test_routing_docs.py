"""docs/routing.md: its examples run and its configuration snippets are valid."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import yaml

from fleetsched.policies.routing import ROUTERS, make_router
from fleetsched.policies.routing.framework import Profile

DOC = Path(__file__).resolve().parents[1] / "docs" / "routing.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_every_registered_router_is_documented():
    text = DOC.read_text()
    for name in ROUTERS:
        assert f"| `{name}` |" in text, name


def test_yaml_snippets_configure_routers():
    for snippet in blocks("yaml"):
        ref = yaml.safe_load(snippet)["policies"]["router"]
        router = make_router(ref["name"], ref.get("params"), seed=0)
        assert callable(router.route)


def test_profile_example_builds_a_router():
    ns: dict[str, object] = {}
    exec(blocks("python")[1], ns)
    assert isinstance(ns["router"], Profile) and ns["router"].needs_prefix


def test_write_your_own_example_runs(tmp_path, capsys):
    path = tmp_path / "least_work.py"
    path.write_text(blocks("python")[-1])
    try:
        runpy.run_path(str(path), run_name="__main__")
        assert "least_work" in ROUTERS
    finally:
        ROUTERS.pop("least_work", None)
    out = capsys.readouterr().out
    assert "least_requests" in out and "least_work" in out and "TTFT p50" in out
