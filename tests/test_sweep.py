"""Sweeps: grids over dotted paths, the content-hash cache, failures, local vs Ray runners."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetsched.cli.options import default_scenario
from fleetsched.core.config import apply_overrides
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json
from fleetsched.sweep import grid as grid_mod
from fleetsched.sweep.grid import expand_grid, parse_grid, run_many, run_points, scenario_key

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


def small():
    return apply_overrides(
        default_scenario(),
        {"workload.transforms.first_n": 150, "cluster.0.count": 2, "seed": 1},
    )


def test_parse_grid_reads_yaml_scalars_and_rejects_malformed_parts() -> None:
    g = parse_grid("router=round_robin,cache_aware; rate_scale=0.5,1 ;cluster.0.count=4,8")
    assert g == {
        "router": ["round_robin", "cache_aware"],
        "rate_scale": [0.5, 1],
        "cluster.0.count": [4, 8],
    }
    for bad in ("router", "router=", "=a,b", "", "a=1;a=2"):
        with pytest.raises(InputError, match="--grid"):
            parse_grid(bad)


def test_expand_grid_is_the_product_and_validates_every_point_first() -> None:
    pts = expand_grid(small(), parse_grid("router=round_robin,random;cluster.0.count=1,2,3"))
    assert len(pts) == 6
    assert [ov for ov, _ in pts][:3] == [
        {"router": "round_robin", "cluster.0.count": c} for c in (1, 2, 3)
    ]
    assert [sc.cluster[0].count for _, sc in pts] == [1, 2, 3, 1, 2, 3]
    with pytest.raises(InputError, match=r"cluster.0.cuont: .*no such field"):
        expand_grid(small(), parse_grid("cluster.0.cuont=1,2"))
    with pytest.raises(InputError, match=r"point cluster.0.count=0: cluster.0.count"):
        expand_grid(small(), parse_grid("cluster.0.count=1,0"))


def test_scenario_key_follows_content_not_paths(tmp_path: Path, traces: Path) -> None:
    s = small()
    assert scenario_key(s) == scenario_key(apply_overrides(s, {}))
    assert scenario_key(s) != scenario_key(apply_overrides(s, {"seed": 2}))
    src = traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    b.parent.mkdir()
    shutil.copy(src, a)
    shutil.copy(src, b)
    sa = apply_overrides(s, {"workload.trace": str(a), "workload.synthetic": None})
    sb = apply_overrides(s, {"workload.trace": str(b), "workload.synthetic": None})
    assert scenario_key(sa) == scenario_key(sb)  # same bytes elsewhere: same point
    b.write_text(b.read_text() + "\n")
    grid_mod._FILE_DIGESTS.clear()
    assert scenario_key(sa) != scenario_key(sb)  # edited file: a new point


def test_cache_makes_a_rerun_simulate_nothing(tmp_path: Path, monkeypatch) -> None:
    scs = [sc for _, sc in expand_grid(small(), parse_grid("rate_scale=0.5,1,2"))]
    first = run_points(scs, jobs=1, cache_dir=tmp_path)
    assert all(r.ok and not r.cached for r in first)
    assert "wall_s" not in first[0].summary

    def boom(sc):
        raise AssertionError("simulated a cached point")

    monkeypatch.setattr(grid_mod, "_simulate_point", boom)
    again = run_points(scs, jobs=1, cache_dir=tmp_path)
    assert all(r.cached for r in again)
    assert [summary_to_json(r.summary) for r in again] == [
        summary_to_json(r.summary) for r in first
    ]


def test_a_failing_point_is_reported_and_the_others_run(tmp_path: Path) -> None:
    # A 70B model on one H100 validates as a scenario but cannot be built: it fails at run
    # time, in its worker.
    pts = expand_grid(small(), parse_grid("cluster.0.model=Llama-3.1-8B,Llama-3.1-70B"))
    res = run_points([sc for _, sc in pts], jobs=2, cache_dir=tmp_path)
    assert res[0].ok and res[0].summary["completed"] == 150
    assert not res[1].ok and "does not fit on H100-SXM" in res[1].error
    assert res[1].input_error
    assert len(list(tmp_path.glob("*.json"))) == 1  # failures are not cached
    with pytest.raises(InputError, match="does not fit"):
        run_many([sc for _, sc in pts], jobs=1)


def test_ray_sweep_matches_local_processes_and_reruns_from_cache(
    tmp_path: Path, monkeypatch
) -> None:
    ray = pytest.importorskip("ray")
    pts = expand_grid(
        small(),
        parse_grid("router=round_robin,least_requests;rate_scale=0.5,2;cluster.0.count=1,2"),
    )
    scs = [sc for _, sc in pts]
    assert len(scs) == 8
    local = run_points(scs, jobs=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_points(scs, ray=True, cache_dir=tmp_path)
    finally:
        ray.shutdown()
    assert all(r.ok and not r.cached for r in remote)
    assert [summary_to_json(r.summary) for r in remote] == [
        summary_to_json(r.summary) for r in local
    ]

    def no_ray(*a, **k):
        raise AssertionError("a cached sweep started Ray")

    monkeypatch.setattr(grid_mod, "_run_ray", no_ray)
    again = run_points(scs, ray=True, cache_dir=tmp_path)
    assert all(r.cached for r in again)
    assert [summary_to_json(r.summary) for r in again] == [
        summary_to_json(r.summary) for r in local
    ]


def test_cli_sweep_writes_json_and_parquet_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    args = [
        *CLI,
        "sweep",
        "--grid",
        "router=round_robin,random;cluster.0.count=1,2",
        "--requests",
        "100",
        "-o",
        str(out),
        "--jobs",
        "2",
    ]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "4 points: 4 simulated, 0 from the cache, 0 failed" in p.stdout
    recs = json.loads((out / "summaries.json").read_text())
    assert [r["grid"] for r in recs] == [
        {"router": r, "cluster.0.count": c} for r in ("round_robin", "random") for c in (1, 2)
    ]
    assert all(r["status"] == "ok" and r["summary"]["requests"] == 100 for r in recs)
    pq = pytest.importorskip("pyarrow.parquet")
    t = pq.read_table(out / "summaries.parquet").to_pylist()
    assert [r["grid.cluster.0.count"] for r in t] == [1, 2, 1, 2]
    assert [r["ttft_s.p99"] for r in t] == [r["summary"]["ttft_s"]["p99"] for r in recs]
    p2 = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p2.returncode == 0 and "0 simulated, 4 from the cache" in p2.stdout
    bad = subprocess.run(
        [
            *CLI,
            "sweep",
            "--grid",
            "cluster.0.model=Llama-3.1-8B,Llama-3.1-70B",
            "--requests",
            "50",
            "-o",
            str(tmp_path / "bad"),
            "--jobs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "point 1" in bad.stderr and "does not fit" in bad.stderr
    assert "1 simulated, 0 from the cache, 1 failed" in " ".join(bad.stdout.split())
