"""The simulate/compare views, checked against the runs' own records, samples and summaries;
and every view left out when its data is absent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tests.report_helpers import ROUTERS, compare_data, small_compare

from fleetsched.cli.options import resolve_scenario
from fleetsched.report import ReportData, Run
from fleetsched.report.data import Sweep, SweepPoint
from fleetsched.report.views import build_views, instances, latency, outcomes, tenants, timeline


def test_a_compare_run_gets_every_run_view() -> None:
    ids = [v.id for v in build_views(compare_data())]
    assert ids == ["latency-cdf", "timeline", "instances", "outcomes", "tenants"]


def test_latency_cdfs_follow_the_records() -> None:
    runs = small_compare()
    (view,) = latency.build(compare_data())
    traces = view.figure.data
    assert len(traces) == 3 * len(runs)  # TTFT, TPOT, E2E for each run
    by = {(t.name, t.xaxis): t for t in traces}
    for run in runs:
        for axis, key in (("x", "ttft_s"), ("x2", "tpot_s"), ("x3", "e2e_s")):
            t = by[(run.label, axis)]
            x, y = np.asarray(t.x, dtype=float), np.asarray(t.y, dtype=float)
            assert x.size <= 201 and y[-1] == 1.0 and (np.diff(x) >= 0).all()
            v = run.requests[key]
            v = v[np.isfinite(v)]
            assert x[-1] == pytest.approx(v.max() * 1000, rel=1e-6)
            i = int(np.argmin(abs(y - 0.99)))
            want = np.quantile(v, 0.99, method="inverted_cdf") * 1000
            assert y[i] == pytest.approx(0.99) and x[i] == pytest.approx(want, rel=1e-6)
            # The curve read at the summary's median is one half.
            med = run.summary[key]["p50"] * 1000
            assert np.interp(med, x, y) == pytest.approx(0.5, abs=0.02)
    assert all(t.legendgroup == t.name for t in traces)
    assert [t.showlegend for t in traces[:3]] == [True, False, False]


def test_ttft_and_queue_over_time_are_bin_means() -> None:
    data = compare_data()
    (view,) = timeline.build(data)
    run = data.runs[2]
    ttft_tr, queue_tr = (t for t in view.figure.data if t.name == run.label)
    x0, dx = ttft_tr.x0, ttft_tr.dx
    assert dx >= 0.5  # never narrower than the sampling interval
    assert len(ttft_tr.y) <= 240
    arr, ttft = run.requests["arrival_s"], run.requests["ttft_s"]
    ys = np.asarray(ttft_tr.y, dtype=float)
    for b in range(0, ys.size, 7):
        lo = x0 - dx / 2 + b * dx
        m = (arr >= lo) & (arr < lo + dx) & np.isfinite(ttft)
        if m.any():
            assert ys[b] == pytest.approx(ttft[m].mean() * 1000, rel=1e-5)
        else:
            assert np.isnan(ys[b])
    s = run.series
    qs = np.asarray(queue_tr.y, dtype=float)
    for b in range(0, qs.size, 5):
        lo = x0 - dx / 2 + b * dx
        m = (s.t_s >= lo) & (s.t_s < lo + dx)
        want = s.queue_len[m].sum(axis=1).mean() if m.any() else np.nan
        np.testing.assert_allclose(qs[b], want, rtol=1e-5)
    assert qs[np.isfinite(qs)].max() > 10  # at 5x the rate requests do queue
    assert "mean of the engine samples" in view.note


def test_heat_maps_one_run_at_a_time_on_one_scale() -> None:
    data = compare_data()
    (view,) = instances.build(data)
    maps = view.figure.data
    assert len(maps) == 2 * len(ROUTERS)
    assert [m.visible for m in maps] == [True, True] + [False] * 4
    assert all(np.asarray(m.z).shape[0] == 4 for m in maps)  # one row per instance
    assert list(maps[0].y) == ["h100-0", "h100-1", "h100-2", "h100-3"]
    assert {m.zmax for m in maps[::2]} == {
        max(np.nanmax(np.asarray(m.z, float)) for m in maps[::2])
    }
    kv = np.concatenate([np.asarray(m.z, float).ravel() for m in maps[1::2]])
    assert np.nanmin(kv) >= 0 and np.nanmax(kv) <= 100
    buttons = view.figure.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == list(ROUTERS)
    assert buttons[1].args[0]["visible"] == [False, False, True, True, False, False]
    # Each cell is the mean of the instance's waiting + running samples in its bin.
    s, z, dx = data.runs[0].series, np.asarray(maps[0].z, float), maps[0].dx
    for b in range(0, z.shape[1], 9):
        lo = maps[0].x0 - dx / 2 + b * dx
        m = (s.t_s >= lo) & (s.t_s < lo + dx)
        np.testing.assert_allclose(z[:, b], s.load[m].mean(axis=0), rtol=1e-6)


def test_outcome_bars_are_the_summary_values() -> None:
    data = compare_data()
    (view,) = outcomes.build(data)
    hit, slo, good = view.figure.data
    assert list(hit.x) == list(ROUTERS)
    for i, run in enumerate(data.runs):
        s = run.summary
        assert hit.y[i] == pytest.approx(100 * s["prefix_hit_rate"])
        assert slo.y[i] == pytest.approx(100 * s["slo_attainment"])
        assert good.y[i] == pytest.approx(s["goodput_req_s"])
    ca, rr = data.runs[2].summary, data.runs[0].summary
    assert ca["prefix_hit_rate"] > rr["prefix_hit_rate"]  # cache-aware routing hits more


def test_tenant_latency_and_shares() -> None:
    data = compare_data()
    (view,) = tenants.build(data)
    run = data.runs[0]
    lat, share = (t for t in view.figure.data if t.name == run.label)
    assert list(lat.x) == ["batch", "chat"]
    for i, tenant in enumerate(lat.x):
        m = (run.requests["tenant"] == tenant) & np.isfinite(run.requests["ttft_s"])
        assert lat.y[i] == pytest.approx(np.percentile(run.requests["ttft_s"][m], 99) * 1000)
    assert sum(share.y) == pytest.approx(100)
    marker = view.figure.data[-1]
    per = run.summary["per_tenant"]
    n = per["batch"]["requests"] + per["chat"]["requests"]
    assert marker.y[1] == pytest.approx(100 * per["chat"]["requests"] / n)
    assert 65 < marker.y[1] < 85  # the scenario weighs chat 3:1


def test_views_are_left_out_when_their_data_is_missing() -> None:
    full = small_compare()
    summary_only = [dataclasses.replace(r, requests=None, series=None) for r in full]
    ids = [v.id for v in build_views(ReportData(summary_only))]
    assert ids == ["outcomes", "tenants"]
    no_series = [dataclasses.replace(r, series=None) for r in full]
    views = {v.id: v for v in build_views(ReportData(no_series))}
    assert list(views) == ["latency-cdf", "timeline", "outcomes", "tenants"]
    assert "counted from the request records" in views["timeline"].note
    one_tenant = Run("x", {**full[0].summary, "per_tenant": {"a": {"requests": 1}}})
    assert [v.id for v in build_views(ReportData([one_tenant]))] == ["outcomes"]
    sweep_only = ReportData(sweeps=[Sweep("s", [SweepPoint({"rate_scale": 1.0}, full[0].summary)])])
    assert [v.id for v in build_views(sweep_only)] == ["sweep-0"]
    assert build_views(ReportData()) == []


def test_the_header_names_what_was_run() -> None:
    from fleetsched.report.header import header_html, scenario_rows

    data = compare_data()
    rows = dict(scenario_rows(data))
    assert rows["router"] == "round_robin | least_requests | cache_aware"
    assert rows["cluster"] == "4 instances (h100: 4 × H100-SXM TP1)"
    assert rows["model"] == "Llama-3.1-8B" and rows["GPU"] == "H100-SXM" and rows["seed"] == "0"
    rate = resolve_scenario(None).workload.synthetic.arrival.rate  # the default scenario's
    assert rows["workload"].startswith(f"synthetic: 12,000 requests, poisson {rate:.1f} /s")
    assert rows["workload"].endswith("(rate × 5, first 2,000)")
    assert "interactive: TTFT ≤ 1000 ms, TPOT ≤ 50 ms" in rows["SLO classes"]
    page = header_html(data)
    assert page.count("<tr><td>") == 3  # one summary row per run
    head = "<th>run</th><th class=num>requests</th><th class=num>TTFT p50</th>"
    assert head in page and "<th class=num>throughput</th>" in page
    p99 = data.runs[2].summary["ttft_s"]["p99"] * 1000
    assert "<td>cache_aware</td><td class=num>2,000</td><td class=num>" in page
    assert f"<td class=num>{p99:,.0f}</td>" in page


def test_a_live_run_has_no_waiting_line_and_wider_bins() -> None:
    """``bench`` records carry no scheduling time (NaN): the engine's queue is unknown to a
    client, so only TTFT is drawn, in bins of about five requests (not 240 mostly empty)."""
    sim = small_compare()[0]
    cols = {k: v[:300].copy() for k, v in sim.requests.items()}
    cols["first_scheduled_s"][:] = np.nan
    live = Run("live", sim.summary, cols)
    (view,) = timeline.build(ReportData([live]))
    (ttft,) = view.figure.data
    assert [a.text for a in view.figure.layout.annotations] == [
        "TTFT (ms, mean over requests arriving in the bin)"
    ]
    span = np.nanmax(cols["finish_s"]) - cols["arrival_s"].min()
    assert 20 <= len(ttft.y) <= 300 // 5 + 1 and ttft.dx >= span / 60
    assert ttft.connectgaps
    both = ReportData([dataclasses.replace(sim, series=None), live])
    (view,) = timeline.build(both)
    assert "Not known for live" in view.note
    assert [t.name for t in view.figure.data] == [sim.label, sim.label, "live"]  # TTFT, queue
