"""A determinism-required traffic class: the step-time cost of each way to serve it against
hand computations, the one-formula property, and exact fast-forward (issue 19, item 3)."""

from __future__ import annotations

import math
import struct
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import PROF_5MS

from fleetsched.core.config import EngineConfig, parse_scenario
from fleetsched.core.request import Request
from fleetsched.engine.determinism import DetBatch, DeterminismCost
from fleetsched.engine.instance import Instance
from fleetsched.errors import InputError
from fleetsched.policies.routing import make_router
from fleetsched.sim.build import build_instances
from fleetsched.sim.kernel import Simulator
from fleetsched.workload import generate

PROF = PROF_5MS


def _cost(mode: str, **kw: float) -> DeterminismCost:
    return DeterminismCost(mode, PROF, **kw)  # type: ignore[arg-type]


def test_batch_invariant_slows_every_step_by_its_overhead() -> None:
    d = _cost("batch_invariant", batch_invariant_overhead=0.45)
    for args in ((512, 512 * 256.5, 10, 5_000), (0, 0.0, 64, 64_000)):
        for det in (DetBatch(), DetBatch(3, 900)):  # whatever share is deterministic
            assert d.step_time(*args, det) == pytest.approx(1.45 * PROF.step_time(*args))


def test_no_batching_runs_each_deterministic_request_alone() -> None:
    # 10 decodes over 5,000 tokens of context, 3 of them deterministic with 1,200 (400 each):
    # the 7 others batch as 0.005 + 7e-4 + 3,800 x 3e-8; each deterministic one takes a step of
    # its own, 0.005 + 1e-4 + 400 x 3e-8.
    d = _cost("no_batching")
    want = (0.005 + 7 * 1e-4 + 3_800 * 3e-8) + 3 * (0.005 + 1e-4 + 400 * 3e-8)
    assert d.step_time(0, 0.0, 10, 5_000, DetBatch(3, 1_200)) == pytest.approx(want, rel=1e-12)
    # Its prefill chunk too: 256 tokens from scratch alone, beside a batch of one 512 chunk.
    det = DetBatch(0, 0, ((256, 256 * 128.5),))
    got = d.step_time(768, 512 * 256.5 + 256 * 128.5, 0, 0, det)
    want = PROF.step_time(512, 512 * 256.5, 0, 0) + PROF.step_time(256, 256 * 128.5, 0, 0)
    assert got == pytest.approx(want, rel=1e-12)
    # No deterministic request in the step: the batch as it is.
    assert d.step_time(0, 0.0, 10, 5_000, DetBatch()) == PROF.step_time(0, 0.0, 10, 5_000)


def test_llm42_adds_verification_and_rollback_in_proportion() -> None:
    # window 32, group 8: a verification pass is 256 tokens, 0.005 + 256 x 2e-5 = 10.12 ms,
    # paid every 32 steps per group of 8 requests; its attention per pair 1e-9 s. 10
    # deterministic decodes over 4,000 tokens of context: 2 passes / 32 per step and
    # (4,000 + 10 x 33 / 2) pairs. Mismatch 5 % per window rolls back 31 / 2 tokens of it: r =
    # 0.05 x 31 / 64, re-decoded at 1e-4 per token and 3e-8 per token of context.
    d = _cost("llm42", window=32, group=8, mismatch_rate=0.05)
    verify = 2 * (0.005 + 256 * 2e-5) / 32 + (4_000 + 10 * 33 / 2) * 1e-9
    r = 0.05 * 31 / 64
    extra = (1 + r) * verify + r * (10 * 1e-4 + 4_000 * 3e-8)
    base = PROF.step_time(0, 0.0, 50, 20_000)
    got = d.step_time(0, 0.0, 50, 20_000, DetBatch(10, 4_000))
    assert got == pytest.approx(base + extra, rel=1e-9)
    # Nothing to verify without deterministic decodes; a lone one pays a whole padded pass.
    assert d.step_time(0, 0.0, 50, 20_000, DetBatch()) == base
    one = d.step_time(0, 0.0, 1, 100, DetBatch(1, 100)) - PROF.step_time(0, 0.0, 1, 100)
    assert one == pytest.approx(
        (1 + r) * ((0.005 + 256 * 2e-5) / 32 + (100 + 16.5) * 1e-9) + r * (1e-4 + 100 * 3e-8),
        rel=1e-9,
    )


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="determinism mode"):
        _cost("none")
    with pytest.raises(InputError, match="window and group"):
        _cost("llm42", window=0)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=200, deadline=None)
@given(
    mode=st.sampled_from(["no_batching", "batch_invariant", "llm42"]),
    n=st.integers(min_value=0, max_value=300),
    share=st.floats(min_value=0.0, max_value=1.0),
    ctx=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=10),
)
def test_decode_step_times_bitwise_equal_step_time(
    mode: str, n: int, share: float, ctx: list[int]
) -> None:
    d = _cost(mode)
    nd = int(n * share)
    c = np.array(ctx, dtype=np.int64)
    dc = c * nd // max(n, 1)  # the deterministic decodes' part of the context
    for ci, di, t in zip(c, dc, d.decode_step_times(n, c, nd, dc), strict=True):
        want = d.step_time(0, 0.0, n, int(ci), DetBatch(nd, int(di)))
        assert _bits(float(t)) == _bits(want)


# --------------------------------------------------------------------------- engine


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 40))
    reqs, t = [], 0.0
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.002, 0.02]))
        p, o = draw(st.integers(1, 300)), draw(st.integers(1, 100))
        reqs.append(Request(i, t, p, o, deterministic=draw(st.booleans())))
    return reqs


def _simulate(reqs, *, ff, mode, blocks):
    cfg = EngineConfig(max_num_batched_tokens=128, max_num_seqs=8)
    insts = [
        Instance(i, blocks, PROF, cfg, fast_forward=ff, determinism=_cost(mode)) for i in range(2)
    ]
    return Simulator(insts, make_router("round_robin")).run(reqs, check=True)


def _key(rec) -> tuple:
    return tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in astuple(rec))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reqs=workloads(),
    mode=st.sampled_from(["no_batching", "batch_invariant", "llm42"]),
    blocks=st.integers(24, 80),
)
def test_fast_forward_equals_step_by_step_with_deterministic_requests(reqs, mode, blocks) -> None:
    a = _simulate(reqs, ff=True, mode=mode, blocks=blocks)
    b = _simulate(reqs, ff=False, mode=mode, blocks=blocks)
    assert [_key(r) for r in a] == [_key(r) for r in b]
    for r, req in zip(a, reqs, strict=True):
        assert math.isnan(r.finish_s) or r.generated_tokens == req.output_tokens


def test_a_lone_deterministic_request_costs_the_same_unbatched() -> None:
    # Alone, "no dynamic batching" changes nothing: each step is the solo step.
    p, o = 500, 40
    plain = _simulate([Request(0, 0.0, p, o)], ff=True, mode="no_batching", blocks=100)[0]
    lone = [Request(0, 0.0, p, o, deterministic=True)]
    det = _simulate(lone, ff=True, mode="no_batching", blocks=100)[0]
    assert det.e2e_s == pytest.approx(plain.e2e_s, rel=1e-12)


SCENARIO = """\
workload:
  synthetic:
    num_requests: 200
    tenants: [{name: batch}, {name: audit, weight: 1.0, deterministic: true}]
cluster: [{engine: {determinism: {mode: llm42, window: 16}}}]
"""


def test_scenario_marks_tenant_requests_and_builds_the_mode() -> None:
    sc = parse_scenario(SCENARIO, "s.yaml")
    assert sc.workload.synthetic is not None
    reqs = list(generate(sc.workload.synthetic, seed=sc.seed))
    assert {r.tenant for r in reqs if r.deterministic} == {"audit"}
    assert any(not r.deterministic for r in reqs)
    (inst,) = build_instances(sc.cluster, sc.policies)
    assert inst.determinism is not None and inst.determinism.mode == "llm42"
    assert inst.determinism.window == 16
    plain = parse_scenario("workload: {synthetic: {num_requests: 1}}\n")
    assert build_instances(plain.cluster, plain.policies)[0].determinism is None


def test_scenario_checks_the_numerics_engine_knobs() -> None:
    from fleetsched.sim.check import scenario_problems

    text = (
        "workload: {synthetic: {num_requests: 1}}\n"
        "cluster: [{gpu: T4, model: Llama-2-7B, offload: {host_kv_gib: 8},\n"
        "  engine: {gpu_memory_utilization: 0.95, max_num_batched_tokens: 2048,\n"
        "           context_switch: fastswitch, swap_group_tokens: 8,\n"
        "           determinism: {mode: llm42}}}]\n"
    )
    problems = dict(scenario_problems(parse_scenario(text), workload=False))
    assert "at least one block" in problems[("cluster", 0, "engine", "swap_group_tokens")]
    assert "CPU offload" in problems[("cluster", 0, "engine", "determinism", "mode")]
