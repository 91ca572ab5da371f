"""Live against simulated through the gateway: the same trace through ``simulate`` (two
instances, router R) and through ``bench`` -> ``fleetsched serve`` (router R) -> two
emulators, for three routers: per-router TTFT and E2E p50 within 10 % and the same ranking.

Every process runs in a session of its own at a raised priority where allowed (root), as in
``test_fidelity.py``: on a shared machine the run queue's delays land on client-side
latencies (see docs/live.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests._live import emulator_process, fleetsched, gateway_process

from fleetsched.policies.routing import make_router

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway-2xA10G.yaml"
ROUTERS = ("cache_aware", "least_requests", "random")
SPEEDUP = "5"


def live_vs_sim(router: str, tmp: Path) -> dict[str, Any]:
    """Simulated and live summaries of the example scenario with ``router``."""
    sc = yaml.safe_load(EXAMPLE.read_text())
    sc["policies"]["router"] = {"name": router}
    path = tmp / f"{router}.yaml"
    path.write_text(yaml.safe_dump(sc))
    out = tmp / f"{router}.json"
    # The simulator refreshes the views every view_refresh_s only for routers that read them;
    # the gateway scrapes at the same interval (in wall time) only for those too. A scrape
    # costs the emulator a few ms of its event loop, time taken from its engine steps.
    scrape = []
    if make_router(router, {}, 0).needs_views:
        scrape = ["--scrape-ms", f"{sc['view_refresh_s'] * 1000 / float(SPEEDUP):g}"]
    with (
        emulator_process("--scenario", str(path), "--speedup", SPEEDUP, priority=10) as a,
        emulator_process("--scenario", str(path), "--speedup", SPEEDUP, priority=10) as b,
        gateway_process("--backends", f"{a},{b}", "--router", router, "--seed", str(sc["seed"]),
                        *scrape, priority=10) as gw,
    ):  # fmt: skip
        p = fleetsched("fidelity", "--scenario", str(path), "--target", gw, "-q",
                       "--summary-json", str(out), priority=10)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| router | TTFT p50 sim | live | error | E2E p50 sim | live | error |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r, doc in results.items():
        cells = [r]
        for key in ("ttft_s", "e2e_s"):
            s, v = doc["simulated"][key]["p50"], doc["live"][key]["p50"]
            cells += [f"{s * 1000:,.1f}", f"{v * 1000:,.1f}", f"{(v - s) / s * 100:+.1f}%"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


@pytest.mark.slow
def test_routers_rank_and_measure_the_same_live_and_simulated(tmp_path: Path) -> None:
    results = {r: live_vs_sim(r, tmp_path) for r in ROUTERS}
    print(table(results))
    for r, doc in results.items():
        live = doc["live"]
        assert live["completed"] == live["requests"] == 150 and live["failed"] == 0, r
        assert live["bench"]["time_scale"] == float(SPEEDUP)
        for key in ("ttft_s", "e2e_s"):
            s, v = doc["simulated"][key]["p50"], live[key]["p50"]
            assert abs(v - s) / s <= 0.10, (r, key, s, v)
    for key in ("ttft_s", "e2e_s"):
        sim_rank = sorted(ROUTERS, key=lambda r: results[r]["simulated"][key]["p50"])
        live_rank = sorted(ROUTERS, key=lambda r: results[r]["live"][key]["p50"])
        assert sim_rank == live_rank, (key, sim_rank, live_rank)
