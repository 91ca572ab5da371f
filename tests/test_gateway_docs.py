"""docs/gateway.md says what the code does: the config example, metric names, options."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from prometheus_client.parser import text_string_to_metric_families

from fleetsched.cli.app import _register, app
from fleetsched.gateway import Gateway, config_from
from fleetsched.gateway.config import parse_gateway_config
from fleetsched.gateway.metrics import Hist, exposition

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "gateway.md").read_text()


def test_the_config_example_is_valid_and_documents_every_key() -> None:
    (example,) = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    cfg = parse_gateway_config(example, "docs/gateway.md")
    assert cfg.router.name == "cache_aware" and len(cfg.backends) == 3
    assert cfg.queue.ordering.name == "wfq" and cfg.tenants["search"].weight == 2
    table = DOC.split("| key | default | what |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_.\[\]]+)", table, flags=re.M))
    for name in type(cfg).model_fields:
        assert any(d == name or d.startswith(name + ".") or d.startswith(name + "[")
                   for d in documented), name  # fmt: skip


def test_every_exported_metric_is_documented_and_every_documented_one_exported() -> None:
    import asyncio

    async def build() -> bytes:
        gw = Gateway(config_from({"backends": [{"url": "http://127.0.0.1:9", "models": ["m"]}]}))
        m = gw.metrics
        m.requests[("t", "m", "200")] = 1
        m.errors[("t", "timeout")] = 1
        m.ttft["m"] = Hist((1.0,))
        m.e2e["m"] = Hist((1.0,))
        m.decisions[("round_robin", "b")] = 1
        m.retries[("b", "reset")] = 1
        m.ejections["b"] = 1
        m.queue_wait["t"] = Hist((1.0,))
        m.rate_limited[("t", "requests")] = 1
        gw.queue.by_tenant["t"] = 0
        from fleetsched.gateway.views import Load

        next(iter(gw.registry)).load = Load(0.0, 1, 2, 0.5, 0, 0)
        return exposition(gw.prom)

    text = asyncio.run(build()).decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    documented = set(re.findall(r"`(fleetsched:gateway_[a-z0-9_]+)`", DOC))
    base = {re.sub(r"_total$", "", d) for d in documented}
    assert families <= base, families - base
    assert base <= families, base - families


def test_documented_options_exist() -> None:
    _register()
    cmd = typer.main.get_command(app)
    sub = cmd.commands["serve"]  # type: ignore[attr-defined]
    opts = {o for p in sub.params for o in (*p.opts, *p.secondary_opts)}
    block = DOC.split("```\nfleetsched serve ", 1)[1].split("```", 1)[0]
    for opt in re.findall(r"--[a-z][a-z-]+", block):
        assert opt in opts, opt
