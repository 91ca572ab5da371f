"""`fleetsched report`, `simulate --report` and `compare --report` through the console script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from fleetsched.metrics.timeseries import read_series

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]
NO_PLOTLY = [
    sys.executable,
    "-c",
    "import sys; sys.modules['plotly'] = None; from fleetsched.cli.app import main; main()",
]
SMALL = ("--requests", "300", "--instances", "2")


def fleetsched(*args: str, cli: list[str] = CLI) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)


def figures(page: Path) -> dict[str, list[dict]]:
    text = page.read_text()
    m = re.search(r'<script id="figures" type="application/json">(.*?)</script>', text, re.S)
    assert m is not None
    return {f["id"]: f["data"] for f in json.loads(m.group(1).replace("<\\/", "</"))}


def test_simulate_report_equals_the_report_of_its_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = fleetsched(
        "simulate",
        *SMALL,
        "--router",
        "least_requests",
        "--report",
        str(tmp_path / "direct.html"),
        "--summary-json",
        str(out / "summary.json"),
        "--requests-out",
        str(out / "requests.csv"),
        "--timeseries-out",
        str(out / "timeseries.csv"),
    )
    assert p.returncode == 0, p.stderr
    assert re.search(r"wrote .*direct.html \(\d\.\d MB, 5 views\)", p.stderr)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["policies"]["router"]["name"] == "least_requests"
    series = read_series(out / "timeseries.csv")
    assert series.names == ["h100-0", "h100-1"] and float(series.t_s[1] - series.t_s[0]) == 0.5
    p = fleetsched("report", str(out), "-o", str(tmp_path / "files.html"))
    assert p.returncode == 0, p.stderr
    assert figures(tmp_path / "direct.html") == figures(tmp_path / "files.html")


def test_compare_report_and_its_per_router_files(tmp_path: Path) -> None:
    d = tmp_path / "cmp"
    p = fleetsched(
        "compare",
        "--routers",
        "round_robin,cache_aware",
        *SMALL,
        "--jobs",
        "2",
        "--report",
        str(tmp_path / "direct.html"),
        "--summary-json",
        str(d / "summary.json"),
        "--requests-out",
        str(d),
        "--timeseries-out",
        str(d),
    )
    assert p.returncode == 0, p.stderr
    names = sorted(f.name for f in d.iterdir())
    assert names == [
        "cache_aware.requests.csv",
        "cache_aware.timeseries.csv",
        "round_robin.requests.csv",
        "round_robin.timeseries.csv",
        "summary.json",
    ]
    p = fleetsched("report", str(d), "-o", str(tmp_path / "files.html"), "--title", "T")
    assert p.returncode == 0, p.stderr
    assert "<title>T</title>" in (tmp_path / "files.html").read_text()
    direct, files = figures(tmp_path / "direct.html"), figures(tmp_path / "files.html")
    assert direct.keys() == files.keys()

    # The summary JSON sorts the routers by name (so the colours go in another order):
    # compare each figure's data trace by trace.
    def data(traces: list[dict]) -> list[str]:
        keep = ("type", "name", "x", "y", "z", "x0", "dx")
        out = []
        for t in traces:
            d = {k: t.get(k) for k in keep}
            if t["type"] == "bar":  # one bar per router: pair them up
                d["x"], d["y"] = None, sorted(zip(t["x"], t["y"], strict=True))
            out.append(json.dumps(d, sort_keys=True))
        return sorted(out)

    for fig in direct:
        assert data(direct[fig]) == data(files[fig]), fig


def test_bad_report_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]")
    cases = [
        ("report", str(tmp_path / "missing.json")),
        ("report", str(tmp_path / "x.json")),
        ("simulate", *SMALL, "--sample-interval", "0"),
        ("compare", *SMALL, "--requests-out", str(tmp_path / "x.json")),
    ]
    for args in cases:
        p = fleetsched(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr


def test_without_plotly_the_report_fails_before_simulating(tmp_path: Path) -> None:
    p = fleetsched(
        "simulate", "--report", str(tmp_path / "r.html"), "--requests", "100", cli=NO_PLOTLY
    )
    assert p.returncode == 2 and "pip install 'fleetsched[report]'" in p.stderr
    assert "simulated" not in p.stdout and not (tmp_path / "r.html").exists()
