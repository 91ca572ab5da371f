"""Roofline knobs in the scenario, per instance group (issue 10, item 1)."""

from __future__ import annotations

import pytest

from fleetsched.core.config import PerfConfig, apply_overrides, parse_scenario
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.perf.calibration import CALIBRATED, PERF_KNOBS
from fleetsched.sim.build import build_instances
from fleetsched.sim.run import simulate

SCENARIO = """\
workload: {synthetic: {num_requests: 10}}
cluster:
  - name: tuned
    gpu: A100-80GB
    count: 1
    perf: {compute_efficiency: 0.5, overhead_s: 0.004, allreduce_latency_s: 2.0e-5}
  - name: calibrated
    gpu: A100-80GB
    count: 1
"""


def test_scenario_knobs_reach_each_groups_step_model() -> None:
    sc = parse_scenario(SCENARIO, "s.yaml")
    tuned, calibrated = (i.step_model for i in build_instances(sc.cluster, sc.policies))
    a100 = CALIBRATED["A100-80GB"]
    assert calibrated.params == a100  # every knob left out is the GPU's calibrated value
    assert tuned.params.compute_efficiency == 0.5
    assert tuned.params.overhead_s == 0.004
    assert tuned.params.allreduce_latency_s == 2e-5
    assert tuned.params.bandwidth_efficiency == a100.bandwidth_efficiency


def test_overhead_knob_changes_simulated_latency_by_exactly_its_steps() -> None:
    # One 100-token prompt with 20 output tokens runs 20 steps (1 prefill + 19 decodes) on an
    # idle instance: 3 ms more overhead per step is 60 ms more end-to-end latency.
    base = parse_scenario("workload: {synthetic: {num_requests: 1}}\n")
    slow = apply_overrides(base, {"cluster.0.perf.overhead_s": 0.001 + 0.003})
    req = [Request(0, 0.0, 100, 20)]
    (a,) = simulate(base, requests=req).records
    (b,) = simulate(slow, requests=req).records
    assert b.e2e_s - a.e2e_s == pytest.approx(20 * 0.003, rel=1e-9)
    assert b.ttft_s - a.ttft_s == pytest.approx(0.003, rel=1e-9)


@pytest.mark.parametrize(
    ("perf", "message"),
    [
        ("{compute_efficiency: 1.5}", "cluster.0.perf.compute_efficiency: Input should be less"),
        ("{bandwidth_efficiency: 0}", "cluster.0.perf.bandwidth_efficiency: Input should be"),
        ("{overhead_s: -0.001}", "cluster.0.perf.overhead_s: Input should be greater"),
        ("{gemm_latency_s: .inf}", "cluster.0.perf.gemm_latency_s: Input should be a finite"),
        ("{overhead: 0.001}", "cluster.0.perf.overhead: Extra inputs are not permitted"),
        ("{compute_half_tokens: many}", "cluster.0.perf.compute_half_tokens: Input should be"),
    ],
)
def test_bad_knobs_name_file_line_and_field(perf: str, message: str) -> None:
    text = f"workload: {{synthetic: {{num_requests: 5}}}}\ncluster:\n  - perf: {perf}\n"
    with pytest.raises(InputError) as exc:
        parse_scenario(text, "s.yaml")
    assert str(exc.value).startswith("s.yaml:3: ") and message in str(exc.value)


def test_knobs_and_a_fitted_profile_exclude_each_other() -> None:
    text = (
        "workload: {synthetic: {num_requests: 5}}\n"
        "cluster:\n  - {profile: p.yaml, perf: {overhead_s: 0.002}}\n"
    )
    with pytest.raises(InputError, match=r"cluster\.0: .*perf knobs \(overhead_s\) apply to the"):
        parse_scenario(text, "s.yaml")


def test_config_knobs_are_the_roofline_knobs() -> None:
    # core cannot import perf: the two lists are kept equal by this test
    assert tuple(PerfConfig.model_fields) == PERF_KNOBS
    assert PerfConfig().knobs() == {}
    assert PerfConfig(overhead_s=0.0).knobs() == {"overhead_s": 0.0}
