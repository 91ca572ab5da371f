"""Reports from the real outputs of `sweep`, `plan`, `bench` and `fidelity` (small runs of each
command, as a user types them), read as their files are and drawn; in headless Chromium too.

`simulate` and `compare` are covered in test_cli_report.py and test_report_browser.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tests._live import emulator_process, fleetsched
from tests.test_report_browser import browser, check_page  # noqa: F401 (the fixture)

from fleetsched.plan.prices import load_prices
from fleetsched.report import load
from fleetsched.report.views import build_views, sweep

EXAMPLE = Path(__file__).parent.parent / "examples" / "equivalence-1xA10G.yaml"


@dataclass(frozen=True, slots=True)
class Outputs:
    sweep: Path  # sweep -o DIR
    plan: Path  # plan --summary-json
    bench: Path  # folder: bench --summary-json summary.json --requests-out requests.csv
    fidelity: Path  # fidelity --summary-json


def ok(*args: str) -> str:
    p = fleetsched(*args, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    d = tmp_path_factory.mktemp("commands")
    o = Outputs(d / "sweep", d / "plan.json", d / "bench", d / "fidelity.json")
    grid = "router=round_robin,cache_aware;cluster.0.count=1,2"
    ok("sweep", "--grid", grid, "--requests", "150", "--jobs", "2", "-o", str(o.sweep))
    ok(
        "plan", "--slo", "ttft_p99<1s", "--model", "Llama-3.1-8B", "--gpus", "h100-sxm",
        "--tp", "1", "--rate", "10", "--duration", "10", "--jobs", "1",
        "--cache", str(d / "plan-cache"), "--summary-json", str(o.plan),
    )  # fmt: skip
    with emulator_process("--scenario", str(EXAMPLE), "--speedup", "20") as url:
        ok(
            "bench", "--target", url, "--scenario", str(EXAMPLE), "--requests", "30", "-q",
            "--summary-json", str(o.bench / "summary.json"),
            "--requests-out", str(o.bench / "requests.csv"),
        )  # fmt: skip
        ok(
            "fidelity", "--scenario", str(EXAMPLE), "--target", url, "--requests", "30", "-q",
            "--summary-json", str(o.fidelity),
        )  # fmt: skip
    return o


def test_a_sweep_over_the_fleet_is_drawn_against_its_cost(outs: Outputs) -> None:
    data = load([outs.sweep])  # the folder: summaries.json (summaries.parquet is skipped)
    (sw,) = data.sweeps
    assert sw.name == "sweep" and len(sw.points) == 4
    price = load_prices()["H100-SXM"]
    assert sorted({p.cost_per_hour for p in sw.points}) == [price, 2 * price]
    assert sweep.x_axis(sw) == ("cost", "cost ($ per hour)")
    (view,) = build_views(data)
    ttft = {t.name: t for t in view.figure.data if t.xaxis == "x"}
    assert set(ttft) == {"round_robin", "cache_aware"}
    recs = json.loads((outs.sweep / "summaries.json").read_text())
    for rec in recs:  # every point on its router's line, at its cost, at its own p99
        t = ttft[rec["grid"]["router"]]
        x = rec["grid"]["cluster.0.count"] * price
        i = list(t.x).index(x)
        assert t.y[i] == pytest.approx(rec["summary"]["ttft_s"]["p99"] * 1000)


def test_a_plan_marks_its_choice(outs: Outputs) -> None:
    doc = json.loads(outs.plan.read_text())
    (pl,) = load([outs.plan]).plans
    ch = doc["choice"]
    assert pl.choice is not None and (pl.choice.replicas, pl.choice.cost_per_hour) == (
        ch["replicas"],
        ch["cost_per_hour"],
    )
    probes = doc["candidates"][0]["probes"]
    assert len(pl.candidates) == len(probes) >= 1
    (view,) = build_views(load([outs.plan]))
    star = next(t for t in view.figure.data if t.name.startswith("chosen: "))
    want = next(p for p in probes if p["replicas"] == ch["replicas"])["summary"]["ttft_s"]["p99"]
    assert list(star.x) == [ch["cost_per_hour"]] and star.y[0] == pytest.approx(want * 1000)
    assert all(p["meets"] == (p["summary"]["ttft_s"]["p99"] < 1.0) for p in probes)


def test_a_bench_run_is_a_live_run(outs: Outputs) -> None:
    data = load([outs.bench])
    (run,) = data.runs
    assert run.label == "bench" and run.requests is not None and run.requests["id"].size == 30
    assert np.isnan(run.requests["first_scheduled_s"]).all()  # a client sees no scheduling
    views = {v.id: v for v in build_views(data)}
    assert list(views) == ["latency-cdf", "timeline", "outcomes"]
    (ttft,) = views["timeline"].figure.data  # TTFT only: no waiting line for a live run
    assert np.isfinite(np.asarray(ttft.y, dtype=float)).sum() >= 3
    assert "127.0.0.1" in data.runs[0].summary["bench"]["target"]


def test_a_fidelity_run_overlays_simulated_and_live(outs: Outputs) -> None:
    doc = json.loads(outs.fidelity.read_text())
    data = load([outs.fidelity])
    (f,) = data.fidelity
    assert not data.runs and f.target == doc["live"]["bench"]["target"]
    (view,) = build_views(data)
    sim, live = (t for t in view.figure.data if t.xaxis == "x")
    assert (sim.name, live.name) == ("simulated", "live")
    assert max(live.x) == pytest.approx(doc["live"]["ttft_s"]["max"] * 1000, rel=1e-6)
    for row in doc["comparison"]:  # the page's error table is fidelity's own
        if row["figure"] == "TTFT p99" and row["rel_err"] is not None:
            assert f"{row['rel_err']:+.1%}" in view.html


def test_they_render_in_chromium(browser, outs: Outputs, tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "all.html"
    ok("report", str(outs.sweep), str(outs.plan), str(outs.bench), str(outs.fidelity),
       "-o", str(page))  # fmt: skip
    views = ["latency-cdf", "timeline", "outcomes", "sweep-0", "plan-0", "fidelity-0"]
    check_page(browser, page, views)
