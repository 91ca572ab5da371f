"""A report from a real `compare` run, opened in headless Chromium (Debian's `chromium`).

Checks that every view drew (plotly's SVG and its traces in each plot), that the console
shows no JavaScript error, and that the page fetched nothing from the network; saves a
screenshot. Both the default page (plotly.js gzip-packed) and `--plain-js` are opened. The
views of `sweep`, `plan`, `bench` and `fidelity` are opened from their real outputs in
test_report_commands.py (with this file's fixture).

`.ci/run` installs Chromium when it is missing and sets ``FLEETSCHED_REQUIRE_CHROMIUM``, so
in CI (that, or ``CI``, set) a missing browser fails this test; elsewhere it is skipped with
the install hint. ``FLEETSCHED_SCREENSHOT=path``
also writes the screenshot there (how docs/report-screenshot.png is made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.browser import Browser, find_chromium
from tests.report_helpers import COMPARE_ARGS

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]
VIEWS = ["latency-cdf", "timeline", "instances", "outcomes", "tenants"]

# Per plot: its SVG layers and the traces drawn in them (scatter/bar traces, heat maps).
PLOTS = """[...document.querySelectorAll('.js-plotly-plot')].map(d => ({
  id: d.id,
  svg: d.querySelectorAll('svg.main-svg').length,
  traces: d.querySelectorAll('.cartesianlayer .trace, .heatmaplayer .hm').length,
  legend: d.querySelectorAll('.legend .traces').length,
}))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    binary = find_chromium()
    if binary is None:
        msg = "headless Chromium is needed: apt-get install -y chromium (or set CHROMIUM)"
        if os.environ.get("FLEETSCHED_REQUIRE_CHROMIUM") or os.environ.get("CI"):
            pytest.fail(f"{msg}; .ci/run installs it, so its absence here is an error")
        pytest.skip(f"{msg}; not found on PATH")
    with Browser(binary, tmp_path_factory.mktemp("chromium") / "profile") as b:
        yield b


def run(*args: str) -> None:
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr


def check_page(browser: Browser, page: Path, views: list[str]) -> None:
    browser.events.clear()
    browser.open(page.resolve().as_uri())
    rendered = browser.wait_for(
        "document.body.dataset.rendered || document.getElementById('status')?.textContent"
        " .startsWith('The plots could not') && document.getElementById('status').textContent",
        timeout=120,
    )
    assert rendered == str(len(views)), rendered
    plots = browser.evaluate(PLOTS)
    assert [p["id"] for p in plots] == [f"fig-{v}" for v in views]
    for p in plots:
        assert p["svg"] >= 1 and p["traces"] >= 1, p
    assert browser.evaluate("document.querySelectorAll('svg.main-svg').length") >= len(views)
    assert browser.errors() == []
    fetched = browser.requested_urls()
    assert fetched[0] == page.resolve().as_uri()
    assert all(u.split(":", 1)[0] in ("file", "data", "blob") for u in fetched), fetched


def test_a_compare_report_renders_in_chromium(browser: Browser, tmp_path: Path) -> None:
    page, out = tmp_path / "report.html", tmp_path / "cmp"
    run(
        "compare",
        *COMPARE_ARGS,
        "--jobs",
        "2",
        "--report",
        str(page),
        "--summary-json",
        str(out / "summary.json"),
        "--requests-out",
        str(out),
        "--timeseries-out",
        str(out),
    )
    plain = tmp_path / "plain.html"
    run("report", str(out), "-o", str(plain), "--plain-js")
    check_page(browser, page, VIEWS)
    shot = tmp_path / "report.png"
    browser.screenshot(shot, height=2600)
    check_page(browser, plain, VIEWS)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    dest = os.environ.get("FLEETSCHED_SCREENSHOT")
    if dest:
        shutil.copyfile(shot, dest)
