"""Reading report inputs: summaries, comparisons, records, time series, and the sweep, plan
and fidelity contracts (docs/report.md), from small hand-made files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.report_helpers import plan_doc, records, summ, sweep_doc, write_json

from fleetsched.errors import InputError
from fleetsched.metrics.io import write_records
from fleetsched.metrics.timeseries import InstanceSeries, write_series
from fleetsched.report import load
from fleetsched.report.views import fidelity, plan, sweep


def series(k: int = 2) -> InstanceSeries:
    return InstanceSeries(
        t_s=np.array([0.0, 1.0]),
        names=[f"i-{j}" for j in range(k)],
        queue_len=np.zeros((2, k), dtype=np.int64),
        running=np.ones((2, k), dtype=np.int64),
        kv_utilization=np.full((2, k), 0.5),
    )


# ----------------------------------------------------------------------------- runs
def test_a_simulate_output_folder_makes_one_run(tmp_path: Path) -> None:
    write_json(tmp_path / "summary.json", summ(router="cache_aware", per_instance_requests=[3, 2]))
    write_records(records(), tmp_path / "requests.csv")
    write_series(series(), tmp_path / "timeseries.csv")
    data = load([tmp_path])
    (run,) = data.runs
    assert run.label == "cache_aware"  # named by its scenario's router
    assert run.requests is not None and run.requests["id"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(run.requests["ttft_s"], [0.2, 0.21, 0.22, 0.23, 0.24])
    assert run.series is not None and run.series.names == ["i-0", "i-1"]
    assert data.title == "sc"


def test_a_comparison_and_its_per_router_files(tmp_path: Path) -> None:
    write_json(tmp_path / "cmp.json", {"a": summ(), "b": summ(ttft_p99=1.0)})
    write_records(records(), tmp_path / "a.requests.csv")
    write_records(records(3), tmp_path / "b.csv")
    write_series(series(), tmp_path / "b.timeseries.csv")
    data = load([tmp_path])
    assert [r.label for r in data.runs] == ["a", "b"]
    a, b = data.runs
    assert a.requests["id"].size == 5 and a.series is None
    assert b.requests["id"].size == 3 and b.series is not None
    assert data.title == "fleetsched report: 2 runs"


def test_records_alone_are_summarised(tmp_path: Path) -> None:
    write_records(records(), tmp_path / "x.csv")
    write_records(records(4), tmp_path / "y.csv")
    data = load([tmp_path / "x.csv", tmp_path / "y.csv"])
    assert [r.label for r in data.runs] == ["x", "y"]
    assert data.runs[1].summary["requests"] == 4
    assert data.runs[0].summary["prefix_hit_rate"] == pytest.approx(0.2)


def test_equal_names_are_told_apart(tmp_path: Path) -> None:
    write_json(tmp_path / "one.json", summ(router="rr"))
    write_json(tmp_path / "two.json", summ(router="rr"))
    assert [r.label for r in load([tmp_path]).runs] == ["rr (one)", "rr (two)"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "x.json").write_text("{\n  nope"), "invalid JSON"),
        (lambda d: write_json(d / "x.json", {"foo": 1}), "not a fleetsched summary"),
        (lambda d: (d / "x.csv").write_text("a,b\n1,2\n"), "neither per-request records"),
        (lambda d: write_series(series(), d / "lonely.timeseries.csv"), "belongs to no run"),
        (lambda d: (d / "sub").mkdir(), "no .json, .csv or .parquet"),
    ],
)
def test_bad_inputs_are_input_errors(tmp_path: Path, setup, message: str) -> None:
    setup(tmp_path)
    target = tmp_path / "sub" if message.startswith("no .json") else tmp_path
    with pytest.raises(InputError, match=message):
        load([target])


def test_a_missing_path_and_a_mismatched_series(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load([tmp_path / "nope.json"])
    write_json(tmp_path / "s.json", summ(per_instance_requests=[1, 1, 1]))
    write_series(series(2), tmp_path / "s.timeseries.csv")
    with pytest.raises(InputError, match="2 instances in the time series but 3"):
        load([tmp_path])


# ----------------------------------------------------------------------------- sweep
def test_sweep_contract_and_frontier(tmp_path: Path) -> None:
    (tmp_path / "grid").mkdir()
    data = load([write_json(tmp_path / "grid" / "summaries.json", sweep_doc())])
    (sw,) = data.sweeps
    assert sw.name == "grid" and len(sw.points) == 7 and sw.points[-1].error == "boom"
    assert sweep.x_axis(sw) == ("param", "rate_scale")
    (view,) = sweep.build(data)
    ttft = {t.name: (list(t.x), list(t.y)) for t in view.figure.data if t.xaxis == "x"}
    # One line per router (the other varying parameter), sorted along the rate axis.
    assert ttft["round_robin"] == ([0.5, 1.0, 2.0], [1000.0, 2000.0, 4000.0])
    assert ttft["cache_aware"] == ([0.5, 1.0, 2.0], [500.0, 1000.0, 2000.0])
    assert ttft["dualmap"] == ([], [])
    assert "boom" in view.html and "1 point(s) failed" in view.html


def test_a_bad_sweep_point_names_its_index(tmp_path: Path) -> None:
    doc = sweep_doc()
    doc[2]["grid"] = [1, 2]
    with pytest.raises(InputError, match=r"\[2\]: grid"):
        load([write_json(tmp_path / "s.json", doc)])


# ----------------------------------------------------------------------------- plan
def test_plan_contract_and_frontier(tmp_path: Path) -> None:
    data = load([write_json(tmp_path / "plan.json", plan_doc())])
    (pl,) = data.plans
    assert pl.choice is not None and pl.choice.fleet == "2 x H100-SXM TP1"
    assert pl.choice.cost_per_hour == 8.0
    (view,) = plan.build(data)
    lines = {t.name: t for t in view.figure.data}
    h100 = lines["H100-SXM TP1"]
    assert list(h100.x) == [4.0, 8.0, 16.0] and list(h100.y) == [4000.0, 2000.0, 1000.0]
    assert list(h100.marker.symbol) == ["circle-open", "circle", "circle"]
    star = lines["chosen: 2 x H100-SXM TP1"]
    assert (list(star.x), list(star.y)) == ([8.0], [2000.0])
    bound = lines["SLO bound"]  # dashed across the costs, in ms
    assert (list(bound.x), list(bound.y)) == ([2.0, 16.0], [2000.0, 2000.0])
    assert "Chosen: <b>2 x H100-SXM TP1</b> at $8.00" in view.html


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(choice={"gpu": "L4", "tp": 1, "replicas": 9}), "not one of"),
        (lambda d: d.update(slo="ttft_p42<2s"), "slo: --slo: unknown metric"),
        (
            lambda d: d["candidates"][1]["probes"][0].pop("cost_per_hour"),
            r"candidates\[1\]\.probes\[0\]: replicas and cost_per_hour",
        ),
    ],
)
def test_bad_plans_are_input_errors(tmp_path: Path, change, message: str) -> None:
    doc = plan_doc()
    change(doc)
    with pytest.raises(InputError, match=message):
        load([write_json(tmp_path / "plan.json", doc)])


# ----------------------------------------------------------------------------- fidelity
def fidelity_doc() -> dict[str, Any]:
    """What ``fleetsched fidelity --summary-json`` writes (cli/fidelity.py)."""
    live = summ(ttft_p99=1.1, throughput_req_s=4.0, bench={"target": "http://127.0.0.1:8000"})
    return {"simulated": summ(ttft_p99=1.0), "live": live, "comparison": []}


def test_fidelity_output_overlay_and_errors(tmp_path: Path) -> None:
    data = load([write_json(tmp_path / "fid.json", fidelity_doc())])
    (f,) = data.fidelity
    assert not data.runs and f.name == "fid" and f.target == "http://127.0.0.1:8000"
    (view,) = fidelity.build(data)
    sim, live = (t for t in view.figure.data if t.xaxis == "x")  # the TTFT panel
    assert (sim.name, live.name) == ("simulated", "live")
    assert live.mode == "lines+markers" and live.line.dash == "dash"
    # Drawn through the summary's percentiles: p50, p90, p95, p99 (no max in this summary).
    np.testing.assert_allclose(live.x, [275.0, 550.0, 1100 / 1.5, 1100.0], rtol=1e-6)
    np.testing.assert_allclose(live.y, [0.5, 0.9, 0.95, 0.99], rtol=1e-6)
    rows = {r[0]: r for r in fidelity.error_rows(f)}
    assert rows["TTFT p99"][1:] == ["1000.0", "1100.0", "+10.0%"]  # (live - sim) / sim
    assert rows["throughput (req/s)"][1:] == ["5.00", "4.00", "-20.0%"]
    assert "preemptions" not in rows  # neither side has it
    assert "127.0.0.1:8000" in view.note


def test_a_summary_with_a_max_is_drawn_to_1() -> None:
    from fleetsched.report.views.latency import summary_points

    x, q = summary_points({"ttft_s": {"p50": 1.0, "p99": 2.0, "max": 3.0}}, "ttft_s")
    assert x.tolist() == [1.0, 2.0, 3.0] and q.tolist() == [0.5, 0.99, 1.0]


def test_a_bench_run_shows_its_target(tmp_path: Path) -> None:
    from fleetsched.report.header import scenario_rows

    write_json(tmp_path / "live.json", summ(bench={"target": "http://127.0.0.1:9"}, itl_s={}))
    data = load([tmp_path])
    assert [r.label for r in data.runs] == ["live"]
    assert scenario_rows(data) == [("live target", "http://127.0.0.1:9")]


def test_a_generic_file_name_is_named_by_its_folder(tmp_path: Path) -> None:
    """``bench --summary-json bench/summary.json --requests-out bench/requests.csv``."""
    (tmp_path / "bench").mkdir()
    write_json(tmp_path / "bench" / "summary.json", summ(bench={"target": "http://127.0.0.1:9"}))
    write_records(records(), tmp_path / "bench" / "requests.csv")
    (run,) = load([tmp_path / "bench"]).runs
    assert run.label == "bench" and run.requests is not None


def test_plan_panels_are_named_and_attainment_stays_linear(tmp_path: Path) -> None:
    doc = plan_doc()
    doc["slo"] = "ttft_p99<=2s,attainment>=0.8"
    (view,) = plan.build(load([write_json(tmp_path / "plan.json", doc)]))
    titles = [a.text for a in view.figure.layout.annotations]
    assert titles == ["TTFT p99 (ms)", "SLO attainment (%)"]
    assert view.figure.layout.yaxis.type == "log" and view.figure.layout.yaxis2.type != "log"
    bound = [t for t in view.figure.data if t.name == "SLO bound"]
    assert list(bound[1].y) == [80.0, 80.0]  # the attainment bound in %
    assert ">TTFT p99 ms</th>" in view.html and ">SLO attainment %</th>" in view.html


def test_a_sweep_over_the_fleet_is_drawn_against_its_cost(tmp_path: Path) -> None:
    """``sweep`` writes each point's fleet; the report prices it (here with a user price file:
    $2 per H100 GPU-hour, TP 2, so 1, 2 and 4 replicas cost $4, $8 and $16 per hour)."""
    from fleetsched.cli.options import resolve_scenario
    from fleetsched.core.config import apply_overrides
    from fleetsched.sweep.grid import PointResult
    from fleetsched.sweep.output import point_records

    base = resolve_scenario(None)
    grids, results = [], []
    for router, slope in (("round_robin", 2.0), ("cache_aware", 1.0)):
        for n in (4, 1, 2):
            grids.append({"router": router, "cluster.0.count": n, "cluster.0.tp": 2})
            results.append(PointResult(summ(ttft_p99=slope / n)))
    scenarios = [apply_overrides(base, g) for g in grids]
    (tmp_path / "fleet").mkdir()
    doc = point_records(grids, results, scenarios)
    assert doc[0]["fleet"] == [{"gpu": "H100-SXM", "tp": 2, "count": 4}]
    write_json(tmp_path / "fleet" / "summaries.json", doc)
    (tmp_path / "prices.yaml").write_text("prices:\n  H100-SXM: 2.0\n")
    data = load([tmp_path / "fleet"], prices=tmp_path / "prices.yaml")
    (sw,) = data.sweeps
    assert sweep.x_axis(sw) == ("cost", "cost ($ per hour)")
    (view,) = sweep.build(data)
    ttft = {t.name: (list(t.x), list(t.y)) for t in view.figure.data if t.xaxis == "x"}
    assert ttft == {  # one line per router; the fleet's count is on the axis, not a line
        "round_robin": ([4.0, 8.0, 16.0], [2000.0, 1000.0, 500.0]),
        "cache_aware": ([4.0, 8.0, 16.0], [1000.0, 500.0, 250.0]),
    }
    doc[0]["fleet"] = [{"gpu": "H100-SXM", "tp": 0, "count": 4}]
    write_json(tmp_path / "fleet" / "summaries.json", doc)
    with pytest.raises(InputError, match=r"\[0\]\.fleet\[0\]: expected \{gpu"):
        load([tmp_path / "fleet"])
    # Without a fleet (an older sweep) the swept count stays the axis.
    for rec in doc:
        rec["fleet"] = None
    write_json(tmp_path / "fleet" / "summaries.json", doc)
    assert sweep.x_axis(load([tmp_path / "fleet"]).sweeps[0]) == ("param", "cluster.0.count")
