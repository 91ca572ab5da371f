"""`fleetsched simulate` end to end, through the real console script."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleetsched.cli.options import default_scenario

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


def fleetsched(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def test_default_scenario_is_valid_and_loaded() -> None:
    s = default_scenario()
    assert sum(g.count for g in s.cluster) == 4
    assert s.workload.synthetic is not None and s.workload.synthetic.sessions.turns_mean > 1


def test_simulate_writes_summary_and_requests(tmp_path: Path) -> None:
    js, rows = tmp_path / "s.json", tmp_path / "r.csv"
    p = fleetsched(
        "simulate",
        "--requests",
        "400",
        "--instances",
        "2",
        "--summary-json",
        str(js),
        "--requests-out",
        str(rows),
        "--seed",
        "3",
    )
    assert p.returncode == 0, p.stderr
    s = json.loads(js.read_text())
    for key in (
        "requests",
        "completed",
        "duration_s",
        "wall_s",
        "ttft_s",
        "tpot_s",
        "e2e_s",
        "queue_s",
        "throughput_tok_s",
        "goodput_req_s",
        "slo_attainment",
        "prefix_hit_rate",
        "preemptions",
        "load_cov",
    ):
        assert key in s, key
    assert set(s["ttft_s"]) >= {"mean", "p50", "p90", "p99"}
    assert s["requests"] == s["completed"] == 400
    with rows.open() as f:
        data = list(csv.DictReader(f))
    assert len(data) == 400 and {r["instance"] for r in data} == {"0", "1"}
    assert "TTFT" in p.stdout


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.csv"
        assert (
            fleetsched(
                "simulate", "-q", "--requests", "200", "--requests-out", str(path)
            ).returncode
            == 0
        )
        outs.append(path.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--router", "nope"], "error: --router: unknown router 'nope' (known: "),
        (["--gpu", "B999"], "error: --gpu: unknown GPU 'B999'; known GPUs: H100-SXM, "),
        (["--trace", "/no/such/file.csv"], "error: --trace: no such trace file: /no/such/file.csv"),
        (["--instances", "0"], "error: --instances: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    p = fleetsched("simulate", "--requests", "10", *args)
    assert p.returncode == 2
    assert p.stderr.startswith(message)
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_bad_scenario_names_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workload:\n  synthetic:\n    num_requests: 5\ncluster:\n  - count: 0\n")
    p = fleetsched("simulate", "--scenario", str(bad))
    assert p.returncode == 2
    assert f"{bad}:5: cluster.0.count" in p.stderr


def test_azure_conv_trace_on_four_instances_completes(traces: Path) -> None:
    from fleetsched.cli.options import resolve_scenario
    from fleetsched.sim.run import simulate

    sc = resolve_scenario(
        None, trace=traces / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv", instances=4
    )
    res = simulate(sc)
    assert res.summary["requests"] == res.summary["completed"] == 19_366
    assert all(r.generated_tokens == r.output_tokens for r in res.records)


def test_compare_runs_each_router_on_the_same_workload(tmp_path: Path) -> None:
    js = tmp_path / "cmp.json"
    p = fleetsched(
        "compare",
        "--routers",
        "round_robin,cache_aware",
        "--requests",
        "600",
        "--jobs",
        "2",
        "--summary-json",
        str(js),
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(js.read_text())
    assert set(res) == {"round_robin", "cache_aware"}
    assert res["round_robin"]["requests"] == res["cache_aware"]["requests"] == 600
    # Multi-turn chat: routing by prefix reuses more of the cache than round robin.
    assert res["cache_aware"]["prefix_hit_rate"] > res["round_robin"]["prefix_hit_rate"]
    assert "cache_aware" in p.stdout


def test_compare_all_runs_every_registered_router(tmp_path: Path) -> None:
    from fleetsched.cli.compare import router_names
    from fleetsched.policies.routing import ROUTERS

    assert router_names("all") == list(ROUTERS)
    assert router_names("random, all,random") == ["random"] + [r for r in ROUTERS if r != "random"]
    js = tmp_path / "all.json"
    args = ["--requests", "120", "--instances", "2", "--jobs", "2", "--summary-json", str(js)]
    p = fleetsched("compare", "--routers", "all", *args)
    assert p.returncode == 0, p.stderr
    res = json.loads(js.read_text())
    assert set(res) == set(ROUTERS)
    assert all(s["requests"] == s["completed"] == 120 for s in res.values())


def test_compare_rejects_unknown_router() -> None:
    p = fleetsched("compare", "--routers", "round_robin,bogus")
    assert p.returncode == 2 and "unknown router 'bogus'" in p.stderr


def test_heterogeneous_groups_each_get_their_own_capacity_and_speed() -> None:
    from fleetsched.core.config import parse_scenario
    from fleetsched.core.request import Request
    from fleetsched.sim.run import simulate

    sc = parse_scenario(
        "workload: {synthetic: {num_requests: 1}}\n"
        "cluster:\n"
        "  - {name: big, gpu: H100-SXM, model: Llama-3.1-8B, count: 1}\n"
        "  - {name: small, gpu: A10G, model: Llama-3.1-8B, count: 1}\n"
    )
    res = simulate(sc, requests=[Request(0, 0.0, 2000, 100), Request(1, 0.0, 2000, 100)])
    big, small = res.records  # round robin: request 0 on the H100, request 1 on the A10G
    assert (big.instance, small.instance) == (0, 1)
    # Same work, 3.35 TB/s vs 0.6 TB/s of memory bandwidth: the A10G decodes ~5x slower.
    assert small.tpot_s / big.tpot_s > 3
    assert res.summary["completed"] == 2


def test_scenario_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    from fleetsched.core.config import load_scenario
    from fleetsched.core.request import Request
    from fleetsched.workload import write_jsonl

    d = tmp_path / "sc"
    d.mkdir()
    write_jsonl([Request(0, 0.0, 100, 10)], d / "t.jsonl")
    (d / "p.yaml").write_text(
        "model: Llama-3.1-8B\ngpu: H100-SXM\ntp: 1\nc0_s: 0.01\nprefill_token_s: 1.0e-5\n"
        "prefill_pair_s: 0.0\ndecode_token_s: 0.0\ndecode_ctx_token_s: 0.0\n"
    )
    (d / "s.yaml").write_text("workload: {trace: t.jsonl}\ncluster: [{profile: p.yaml}]\n")
    sc = load_scenario(d / "s.yaml")
    assert sc.workload.trace == str(d / "t.jsonl")
    assert sc.cluster[0].profile == str(d / "p.yaml")
    from fleetsched.sim.run import simulate

    (rec,) = simulate(sc).records
    assert rec.ttft_s == pytest.approx(0.01 + 100 * 1e-5)  # the profile's step time
