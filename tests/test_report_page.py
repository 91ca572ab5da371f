"""The HTML page: self-contained (plotly.js embedded once, nothing fetched), deterministic,
escaped, and small whatever the number of requests."""

from __future__ import annotations

import base64
import gzip
import json
import re
import sys

import numpy as np
import pytest
from plotly.offline import get_plotlyjs
from tests.report_helpers import compare_data

from fleetsched.errors import InputError
from fleetsched.metrics.timeseries import InstanceSeries
from fleetsched.report import ReportData, Run, render
from fleetsched.report.views import build_views
from fleetsched.report.views.common import require_plotly


def figures(page: str) -> list[dict]:
    m = re.search(r'<script id="figures" type="application/json">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_the_page_is_self_contained_and_deterministic() -> None:
    data = compare_data()
    page = render(data)
    assert page == render(data)  # same inputs, same bytes
    assert "<link" not in page and not re.search(r"\ssrc=", page)  # nothing to fetch
    packed = re.search(r'<script id="plotly-js-gz"[^>]*>(.*?)</script>', page, re.S)
    assert packed is not None and page.count('id="plotly-js-gz"') == 1
    assert gzip.decompress(base64.b64decode(packed.group(1))).decode() == get_plotlyjs()
    figs = figures(page)
    views = build_views(data)
    assert [f["id"] for f in figs] == [f"fig-{v.id}" for v in views]
    for f in figs:
        assert f'<div class="plot" id="{f["id"]}"></div>' in page
        assert "template" not in f["layout"]
    assert len(page.encode()) < 2.5e6


def test_plain_js_embeds_plotly_once_uncompressed() -> None:
    page = render(compare_data(), compress_js=False)
    head = get_plotlyjs()[:300]
    assert page.count(head) == 1 and 'id="plotly-js-gz"' not in page
    assert len(page.encode()) > len(get_plotlyjs())


def test_labels_are_escaped() -> None:
    run = compare_data().runs[0]
    evil = Run('<script>alert("x")</script>', run.summary, run.requests, run.series)
    page = render(ReportData([evil]))
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert any(t.get("name") == evil.label for f in figures(page) for t in f["data"])


def synthetic_run(label: str, n: int, rng: np.random.Generator) -> Run:
    """``n`` requests over an hour on 16 instances sampled every 0.5 s, without simulating."""
    arrival = np.sort(rng.uniform(0, 3600, n))
    ttft = rng.lognormal(-1, 1, n)
    e2e = ttft + rng.lognormal(1, 0.5, n)
    cols = {
        "id": np.arange(n),
        "tenant": np.where(rng.random(n) < 0.7, "chat", "batch"),
        "arrival_s": arrival,
        "first_scheduled_s": arrival + ttft / 2,
        "finish_s": arrival + e2e,
        "ttft_s": ttft,
        "tpot_s": rng.lognormal(-3.5, 0.3, n),
        "e2e_s": e2e,
    }
    t = np.arange(0, 3600, 0.5)
    k = 16
    series = InstanceSeries(
        t,
        [f"gpu-{i}" for i in range(k)],
        rng.integers(0, 20, (t.size, k)),
        rng.integers(0, 256, (t.size, k)),
        rng.random((t.size, k)),
    )
    summary = {
        "requests": n,
        "ttft_s": {"p50": 0.3, "p99": 3.0},
        "prefix_hit_rate": 0.3,
        "slo_attainment": 0.9,
        "goodput_req_s": 5.0,
        "per_tenant": {"chat": {"requests": 7, "output_tokens": 70}, "batch": {"requests": 3}},
    }
    return Run(label, summary, cols, series)


def test_the_page_stays_small_for_many_requests() -> None:
    """Ten runs of 20k requests on 16 instances for an hour: far under 5 MB, and ten times
    the requests add almost nothing (CDFs on a quantile grid, series in bins)."""
    rng = np.random.default_rng(0)
    small = render(ReportData([synthetic_run(f"p{i}", 20_000, rng) for i in range(10)]))
    large = render(ReportData([synthetic_run(f"p{i}", 200_000, rng) for i in range(10)]))
    assert len(small.encode()) < 3.5e6
    assert abs(len(large) - len(small)) < 0.01 * len(small)
    assert [f["id"] for f in figures(small)] == [
        "fig-latency-cdf",
        "fig-timeline",
        "fig-instances",
        "fig-outcomes",
        "fig-tenants",
    ]


def test_plotly_missing_is_an_input_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(InputError, match=r"fleetsched\[report\]"):
        require_plotly()
