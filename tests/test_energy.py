"""Energy metering: the step power model by hand, and the engine's split of each step's joules
among its requests (every joule of every step charged to exactly one request, the same with
and without fast-forward)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import Scenario
from fleetsched.perf import GPUS, get_gpu, get_model
from fleetsched.perf.power import TDP_W, StepPower
from fleetsched.sim.run import simulate


def test_idle_and_saturated_steps_by_hand() -> None:
    gpu, model = get_gpu("H100-SXM"), get_model("Llama-3.1-8B")
    p = StepPower(gpu, model, tp=2)
    assert p.idle_w == pytest.approx(2 * 0.15 * 700)
    # Any step reads the weights once (split over the two GPUs' bandwidth).
    weights_s = model.active_params * model.dtype_bytes / (2 * gpu.mem_bw_bytes_s)
    assert p.energy_j(0, 0.0, 0, 0.0, 0.5) == pytest.approx(
        2 * 0.15 * 700 * 0.5 + 2 * 0.85 * 700 * weights_s
    )
    # 100k prefill tokens in 1 ms need far more than the datasheet FLOP/s: power limit.
    assert p.energy_j(100_000, 0.0, 0, 0.0, 1e-3) == pytest.approx(2 * 700 * 1e-3)


def test_a_small_decode_step_is_memory_bound_by_hand() -> None:
    gpu, model = get_gpu("H100-SXM"), get_model("Llama-3.1-8B")
    p = StepPower(gpu, model, tp=1)
    # One decode with a 1,000-token context: reading the weights and that KV dominates.
    kv = 2 * model.num_layers * model.num_kv_heads * model.head_dim * model.dtype_bytes
    read_s = (model.active_params * model.dtype_bytes + 1000 * kv) / gpu.mem_bw_bytes_s
    dt = 0.010
    assert p.utilisation(0, 0.0, 1, 1000.0, dt) == pytest.approx(read_s / dt)
    assert p.energy_j(0, 0.0, 1, 1000.0, dt) == pytest.approx(0.15 * 700 * dt + 0.85 * 700 * read_s)


def _scenario(n: int, rate: float, seed: int) -> Scenario:
    return Scenario.model_validate(
        {
            "seed": seed,
            "cluster": [{"gpu": "A10G", "model": "Llama-3.1-8B", "count": 2}],
            "workload": {
                "synthetic": {
                    "num_requests": n,
                    "arrival": {"rate": rate},
                    "prompt": {"kind": "uniform", "low": 16, "high": 3000},
                    "output": {"kind": "uniform", "low": 1, "high": 300},
                }
            },
            "policies": {"router": {"name": "least_requests"}},
        }
    )


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 40), rate=st.floats(0.5, 30), seed=st.integers(0, 1000))
def test_every_joule_is_charged_once_and_fast_forward_agrees(
    n: int, rate: float, seed: int
) -> None:
    sc = _scenario(n, rate, seed)
    a = simulate(sc)
    b = simulate(sc, fast_forward=False)
    total = a.summary["energy_j"]
    assert total > 0
    per_req = [r.energy_j for r in a.records]
    assert all(e > 0 for e in per_req)
    assert [r.energy_j for r in b.records] == pytest.approx(per_req, rel=1e-9)
    # The fleet drew every step's joules (what the requests were charged, all of it) plus idle
    # power between steps, and never more than the power limit over the run.
    fleet, dur = a.summary["fleet_energy_j"], a.summary["duration_s"]
    idle_w = 0.15 * 150
    between = sum(idle_w * max(dur - s.busy_s, 0.0) for s in a.engine_stats)
    assert fleet - between == pytest.approx(total, rel=1e-9)
    assert fleet <= 2 * 150 * dur * (1 + 1e-9)


def test_every_catalog_gpu_has_a_power_limit() -> None:
    """A GPU added to the catalog (T4 and A10 came with CPU offload) must get its board power,
    or every simulation on it fails when its energy meter is built."""
    assert set(GPUS) <= set(TDP_W)
    assert TDP_W["T4"] == 70.0 and TDP_W["A10"] == 150.0  # NVIDIA datasheets


@settings(max_examples=200, deadline=None)
@given(
    gpu=st.sampled_from(["H100-SXM", "A10G", "A100-80GB"]),
    tp=st.sampled_from([1, 2, 4]),
    n=st.integers(1, 300),
    ctx0=st.integers(0, 2_000_000),
    steps=st.integers(1, 600),
    extra=st.floats(0.0, 0.05),
)
def test_a_decode_runs_energy_in_closed_form_is_the_sum_of_its_steps(
    gpu: str, tp: int, n: int, ctx0: int, steps: int, extra: float
) -> None:
    from fleetsched.perf.roofline import RooflineModel

    g, m = get_gpu(gpu), get_model("Llama-3.1-8B")
    p, line = StepPower(g, m, tp=tp), RooflineModel(g, m, tp=tp).decode_line(n)
    a, b = line
    dts = [a + (ctx0 + n * j) * b for j in range(steps)]
    dts[0] += extra  # a swap-in lengthens the first step
    by_step = sum(p.energy_j(0, 0.0, n, ctx0 + n * j, dt) for j, dt in enumerate(dts))
    closed = p.decode_run_energy_j(n, ctx0, steps, sum(dts), line)
    assert closed == pytest.approx(by_step, rel=1e-9)


def test_the_closed_form_declines_when_a_step_would_saturate() -> None:
    p = StepPower(get_gpu("H100-SXM"), get_model("Llama-3.1-8B"))
    # A step model far faster than the datasheet: utilisation capped, sum step by step.
    assert p.decode_run_energy_j(4, 1000, 10, 1e-5, (1e-6, 1e-12)) is None
