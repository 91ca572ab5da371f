"""Capacity planning: SLO clauses, prices, perf-model bounds and a verified cheapest fleet."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fleetsched.cli.plan import plan_base
from fleetsched.errors import InputError
from fleetsched.plan import load_prices, meets, parse_slo, plan_fleet
from fleetsched.plan.bounds import replica_bounds, workload_stats
from fleetsched.plan.search import fleet_scenario
from fleetsched.sim.run import simulate

CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


def test_parse_slo_units_and_errors() -> None:
    cs = parse_slo("ttft_p99<2s, tpot_p99<=100ms,e2e_mean<30,attainment>=0.99")
    assert [(c.metric, c.stat, c.op, c.value) for c in cs] == [
        ("ttft_s", "p99", "<", 2.0),
        ("tpot_s", "p99", "<=", 0.1),
        ("e2e_s", "mean", "<", 30.0),
        ("slo_attainment", None, ">=", 0.99),
    ]
    s = {
        "requests": 3,
        "completed": 3,
        "ttft_s": {"p99": 1.9},
        "tpot_s": {"p99": 0.1},
        "e2e_s": {"mean": 29.0},
        "slo_attainment": 0.995,
    }
    assert meets(s, cs)
    assert not meets({**s, "completed": 2}, cs)  # an unfinished request misses the SLO
    assert not meets({**s, "ttft_s": {"p99": 2.0}}, cs)  # strict <
    assert not meets({**s, "ttft_s": {"p99": None}}, cs)  # undefined misses
    for bad in ("ttft<2s", "ttft_p98<2", "ttft_p99>2", "attainment<0.9", "", "x_p99<1"):
        with pytest.raises(InputError, match="--slo"):
            parse_slo(bad)


def test_prices_shipped_and_overridden(tmp_path: Path) -> None:
    p = load_prices()
    assert p["H100-SXM"] > p["A100-80GB"] > p["L40S"] > 0
    f = tmp_path / "p.yaml"
    f.write_text("prices:\n  h100: 2.5\n")
    q = load_prices(f)
    assert q["H100-SXM"] == 2.5 and q["L40S"] == p["L40S"]
    f.write_text("prices:\n  B200: 5\n")
    with pytest.raises(InputError, match=r"p.yaml: prices.B200: unknown GPU"):
        load_prices(f)
    f.write_text("prices:\n  h100: 0\n")
    with pytest.raises(InputError, match="must be > 0"):
        load_prices(f)


def small_base(rate: float = 24.0, duration: float = 15.0):
    return plan_base(None, None, rate, duration, None, 0)


def test_bounds_rule_out_what_cannot_fit_or_decode_fast_enough() -> None:
    base = small_base()
    stats = workload_stats(base.workload, base.seed)
    g = base.cluster[0]
    b = replica_bounds(
        g.model_copy(update={"model": "Llama-3.1-70B", "gpu": "L40S"}),
        stats,
        parse_slo("ttft_p99<2s"),
    )
    assert not b.feasible and "does not fit" in b.reason
    b = replica_bounds(g.model_copy(update={"gpu": "L40S"}), stats, parse_slo("tpot_p99<1ms"))
    assert not b.feasible and "one decode step alone" in b.reason
    # The throughput bound by hand: S decodes per step (max_num_seqs, or what the KV cache
    # holds at the 10th-percentile prompt each) at step_time(0, 0, S, S * c) seconds.
    import numpy as np

    from fleetsched.perf import build_step_model
    from fleetsched.sim.build import build_instances
    from fleetsched.workload import build_workload

    a10g = g.model_copy(update={"gpu": "A10G"})
    ok = replica_bounds(a10g, stats, parse_slo("ttft_p99<2s"))
    c = int(np.percentile([r.prompt_tokens for r in build_workload(base.workload, 0)], 10))
    inst = build_instances([a10g.model_copy(update={"count": 1})], base.policies)[0]
    s = min(inst.cfg.max_num_seqs, inst.kv.num_blocks * inst.bt // c)
    per = s / build_step_model("A10G", g.model, 1).step_time(0, 0.0, s, s * c)
    assert ok.decode_tokens_s == pytest.approx(per)
    assert ok.min_replicas == max(1, math.ceil(stats.decode_tokens / stats.span_s / per))


def test_plan_answer_is_verified_independently() -> None:
    base = small_base()
    slo = parse_slo("ttft_p99<1s,tpot_p99<60ms")
    res = plan_fleet(
        base,
        slo,
        model="Llama-3.1-8B",
        gpus=["l40s", "a10g"],
        tps=[1],
        prices=load_prices(),
        jobs=2,
    )
    b = res.best
    assert b is not None and res.verified
    n = b.hi
    # Independent check: the chosen fleet meets the SLO, one replica fewer misses it.
    assert meets(simulate(fleet_scenario(base, "Llama-3.1-8B", b.gpu, 1, n)).summary, slo)
    assert n > 1, "pick a load that needs more than one replica"
    assert not meets(simulate(fleet_scenario(base, "Llama-3.1-8B", b.gpu, 1, n - 1)).summary, slo)
    # No cheaper fleet of the other kind meets it either (it was searched or pruned).
    for c in res.candidates:
        if c.hi is not None:
            assert c.cost(c.hi) >= b.cost(n)
        for count, probe in c.probes.items():
            assert count >= c.bounds.min_replicas  # nothing below the bound simulated
            if probe.meets:
                assert probe.cost_per_h >= b.cost(n)


def test_hopeless_everywhere_simulates_nothing() -> None:
    res = plan_fleet(
        small_base(),
        parse_slo("tpot_p99<1ms"),
        model="Llama-3.1-8B",
        gpus=["h100", "l40s"],
        tps=[1, 2],
        prices=load_prices(),
        jobs=1,
    )
    assert res.best is None and res.probes == []
    assert all("one decode step alone" in c.stopped for c in res.candidates)


def test_cli_plan_prints_choice_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    p = subprocess.run(
        [
            *CLI,
            "plan",
            "--slo",
            "ttft_p99<1s,tpot_p99<60ms",
            "--rate",
            "6",
            "--duration",
            "20",
            "--model",
            "Llama-3.1-8B",
            "--gpus",
            "l40s,a10g",
            "--tp",
            "1,2",
            "--jobs",
            "2",
            "--summary-json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "choice:" in p.stdout and "verified: re-simulated it meets" in p.stdout
    js = json.loads(out.read_text())
    assert js["verified"] and js["choice"]["gpus"] == js["choice"]["replicas"] * js["choice"]["tp"]
    bad = subprocess.run(
        [*CLI, "plan", "--slo", "ttft<1s", "--rate", "6", "--model", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--slo" in bad.stderr
