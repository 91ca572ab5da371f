"""CPU catalog, the llama.cpp ubatch time models and profile files, the engine-kind config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleetsched.core.config import InstanceGroup, PoliciesConfig, parse_scenario
from fleetsched.errors import InputError
from fleetsched.perf import get_model
from fleetsched.perf.cpu import CPUS, get_cpu
from fleetsched.perf.ubatch import (
    CPURoofline,
    LlamaCppProfile,
    StepPlan,
    Ubatch,
    load_llamacpp_profile,
    parse_llamacpp_profile,
    plan_features,
)
from fleetsched.sim.build import build_instances

GEMMA = get_model("gemma-3-270m")


def test_cpu_catalog_figures_from_their_datasheets() -> None:
    # channels x MT/s x 8 bytes; FMA pipes x lanes x 2 x base clock.
    assert CPUS["EPYC-9654"].mem_bw_bytes_s == pytest.approx(12 * 4800e6 * 8)
    assert CPUS["EPYC-7763"].mem_bw_bytes_s == pytest.approx(8 * 3200e6 * 8)
    assert CPUS["EPYC-7763"].fp32_flops_per_core == pytest.approx(2 * 8 * 2 * 2.45e9)
    assert CPUS["Xeon-8480+"].fp32_flops_per_core == pytest.approx(2 * 16 * 2 * 2.0e9)
    assert get_cpu("cpu").name == "EPYC-Milan-2vCPU"
    with pytest.raises(InputError, match="unknown CPU 'z80'; known CPUs"):
        get_cpu("z80")


def test_cpu_roofline_by_hand() -> None:
    cpu = get_cpu("EPYC-7763")
    r = CPURoofline(
        cpu,
        GEMMA,
        threads=2,
        weight_bits=8,
        compute_efficiency=0.5,
        bandwidth_efficiency=0.5,
        ubatch_overhead_s=0.001,
    )
    flops = 2 * 78.4e9 * 0.5
    bw = 204.8e9 * 0.5
    head = 262144 * 640
    weights = 268_098_176 / bw  # 1 byte per parameter
    # One decode token: the weight read dominates.
    one = Ubatch(tokens=1, seqs=1, outputs=1, pairs=100, reads=100)
    # Attention: 4 flops per pair, per layer and head; plus the K and V cells read (18 layers
    # x 2 x 1 KV head x 256 dims x 2 bytes = 18,432 bytes per layer-averaged cell).
    attn = 4 * 18 * 4 * 256 * 100 / flops + 100 * 18_432 / bw
    assert r.ubatch_time(one) == pytest.approx(
        max(weights, 2 * (268_098_176 - head) / flops + 2 * head / flops) + attn + 0.001
    )
    # 512 prompt tokens, no output: compute-bound on the body.
    big = Ubatch(tokens=512, seqs=1, outputs=0, pairs=0)
    assert r.ubatch_time(big) == pytest.approx(2 * (268_098_176 - head) * 512 / flops + 0.001)
    with pytest.raises(InputError, match=r"threads must be in 1\.\.64"):
        CPURoofline(cpu, GEMMA, threads=65)


def test_profile_prices_a_step_and_its_features_agree() -> None:
    p = LlamaCppProfile(
        model="gemma-3-270m",
        device="cpu",
        ubatch_s=0.01,
        token_s=0.001,
        output_s=0.004,
        pair_s=1e-6,
        kv_read_s=2e-6,
        checkpoint_s=0.02,
        request_s=0.03,
        small_ubatch_s=[0.01, 0.02],
        copy_byte_s=1e-9,
    )
    plan = StepPlan(
        ubatches=[Ubatch(2, 2, 2, 100.0, 100.0), Ubatch(300, 1, 1, 4000.0, 310.0)],
        checkpoints=1,
        copy_bytes=1e6,
    )
    want = (0.02 + 2 * 0.004 + 1e-4 + 2e-4) + (0.01 + 0.3 + 0.004 + 4e-3 + 6.2e-4) + 0.02 + 1e-3
    assert p.step_time(plan) == pytest.approx(want)
    f = plan_features(plan, 2)
    assert f @ p.coefficients() + 1e6 * p.copy_byte_s == pytest.approx(want)


def test_profile_yaml_round_trip_and_errors(tmp_path: Path) -> None:
    p = LlamaCppProfile(
        model="gemma-3-270m",
        device="EPYC-Milan-2vCPU",
        ubatch_s=0.01,
        token_s=0.003,
        output_s=0.01,
        pair_s=2e-7,
        small_ubatch_s=[0.02],
    )
    f = tmp_path / "p.yaml"
    f.write_text(p.to_yaml())
    assert load_llamacpp_profile(f) == p
    good = "model: m\ndevice: cpu\nubatch_s: 0\ntoken_s: 0\noutput_s: 0\npair_s: 0\n"
    assert parse_llamacpp_profile(good).token_s == 0
    with pytest.raises(InputError, match=r"p.yaml:4: token_s: Input should be greater"):
        parse_llamacpp_profile(good.replace("token_s: 0", "token_s: -1"), "p.yaml")
    with pytest.raises(InputError, match="c0_s: Extra inputs are not permitted"):
        parse_llamacpp_profile(good + "c0_s: 1\n", "p.yaml")


def test_engine_kind_in_a_scenario_and_its_errors() -> None:
    g = InstanceGroup.model_validate(
        {"device": "cpu", "model": "gemma-3-270m", "engine": {"kind": "llamacpp", "parallel": 2}}
    )
    assert g.gpu == "cpu" and g.engine.kind == "llamacpp"
    text = """
workload: {synthetic: {num_requests: 1}}
cluster:
  - device: cpu
    engine: {kind: llamacpp, parallel: 4, max_num_seqs: 8}
"""
    with pytest.raises(InputError, match=r"<s>:5: cluster\.0\.engine\.max_num_seqs: Extra inputs"):
        parse_scenario(text, "<s>")
    with pytest.raises(InputError, match=r"ctx \(16\) must be at least parallel \(32\)"):
        parse_scenario(text.replace("parallel: 4, max_num_seqs: 8", "parallel: 32, ctx: 16"), "<s>")


def test_build_picks_the_time_model_and_checks_the_profile(tmp_path: Path) -> None:
    g = InstanceGroup.model_validate(
        {"device": "cpu", "model": "gemma-3-270m", "count": 2, "engine": {"kind": "llamacpp"}}
    )
    insts = build_instances([g], PoliciesConfig())
    assert [type(i.time_model).__name__ for i in insts] == ["CPURoofline", "CPURoofline"]
    prof = tmp_path / "p.yaml"
    prof.write_text(
        LlamaCppProfile(
            model="gemma-3-270m",
            device="EPYC-Milan-2vCPU",
            threads=1,
            ubatch_s=0,
            token_s=0,
            output_s=0,
            pair_s=0,
        ).to_yaml()
    )
    bad = g.model_copy(update={"profile": str(prof)})
    with pytest.raises(InputError, match="threads=1 but the engine runs threads=2"):
        build_instances([bad], PoliciesConfig())
    other = g.model_copy(update={"profile": str(prof), "gpu": "EPYC-9654"})
    with pytest.raises(InputError, match="device 'EPYC-Milan-2vCPU' but the instance group"):
        build_instances([other], PoliciesConfig())


CLI = [sys.executable, "-c", "from fleetsched.cli.app import main; main()"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "p.yaml"], "exactly one of --target URL or --from-measurements"),
        (["-o", "p.yaml", "--target", "http://10.0.0.1:8080"], "must be a loopback address"),
        (["-o", "p.yaml", "--from-measurements", "missing.json"], "cannot read measurements"),
        (["-o", "p.yaml", "--target", "http://127.0.0.1:1", "--engine", "tgi"], "--engine must"),
    ],
)
def test_calibrate_bad_input_is_one_line_and_exit_2(tmp_path: Path, args, message) -> None:
    p = subprocess.run(
        [*CLI, "calibrate", *args], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr


def test_list_cpus_json() -> None:
    import json

    p = subprocess.run([*CLI, "list", "cpus", "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert set(rows) == set(CPUS)
    assert rows["EPYC-9654"]["mem_bw_gb_s"] == pytest.approx(460.8)
    assert "cpu" in rows["EPYC-Milan-2vCPU"]["aliases"]


def test_emulate_refuses_a_llamacpp_group_and_profile_with_one_line(tmp_path: Path, cli) -> None:
    prof = tmp_path / "gemma.yaml"
    prof.write_text("engine: llamacpp\nmodel: gemma-3-270m\ndevice: cpu\nthreads: 2\n")
    sc = tmp_path / "sc.yaml"
    sc.write_text(
        "workload: {synthetic: {num_requests: 5}}\n"
        "cluster:\n  - {device: cpu, model: gemma-3-270m, engine: {kind: llamacpp}}\n"
    )
    code, _, err = cli("emulate", "--scenario", str(sc), "--port", "0")
    assert code == 2 and "the emulator runs the vLLM engine model" in err, err
    code, _, err = cli("emulate", "--gpu", "A10G", "--profile", str(prof), "--port", "0")
    assert code == 2 and f"{prof}: a llama.cpp profile" in err, err
    assert len(err.strip().splitlines()) == 1
