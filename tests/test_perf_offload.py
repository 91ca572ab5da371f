"""CPU offload with hybrid attention (APEX): host KV blocks, the CPU attention step model
against figures derived by hand, and the apex dispatch policy (issue 19, item 2)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import parse_scenario
from fleetsched.core.request import Request
from fleetsched.engine.sequence import Seq
from fleetsched.errors import InputError
from fleetsched.perf import RooflineModel, get_gpu, get_model
from fleetsched.perf.offload import HostAttention, HybridStepModel, host_attention
from fleetsched.policies.engine.apex import APEXAdmission
from fleetsched.sim.build import (
    build_instances,
    group_gpu_kv_blocks,
    group_host_kv_blocks,
    group_kv_blocks,
)
from fleetsched.sim.check import scenario_problems
from fleetsched.sim.kernel import new_record

T4 = get_gpu("T4")
L2 = get_model("Llama-2-7B")
GiB = 2**30


def test_catalog_host_shares_and_llama2() -> None:
    # AWS g4dn.metal: 2 x 6 channels of DDR4-2933 = 281.6 GB/s and 2 x 24 cores x 2.5 GHz x 64
    # FP32 FLOP/cycle for 8 T4s; 384 GiB.
    assert T4.host_mem_bw_bytes_s == pytest.approx(35.2e9)
    assert T4.host_cpu_flops == pytest.approx(0.96e12)
    assert T4.host_mem_bytes == 48 * GiB
    assert get_gpu("H200").host_mem_bw_bytes_s == 0  # no host catalogued
    # Llama-2-7B: multi-head attention, 2 x 32 x 32 x 128 x 2 B = 524,288 B of KV per token.
    assert L2.kv_bytes_per_token == 524_288
    assert get_model("meta-llama/Llama-2-7b-hf") is L2


def _t4_host() -> HostAttention:
    return host_attention(
        layers=32,
        heads=32,
        kv_heads=32,
        head_dim=128,
        kv_bytes_per_token=524_288,
        dtype_bytes=2,
        host_mem_bw_bytes_s=T4.host_mem_bw_bytes_s,
        host_cpu_flops=T4.host_cpu_flops,
        host_link_bw_bytes_s=T4.host_link_bw_bytes_s,
        bandwidth_efficiency=0.5,
    )


def test_host_attention_costs_by_hand() -> None:
    h = _t4_host()
    # Reading 524,288 B at 0.5 x 35.2 GB/s = 29.8 us beats 4 x 32 x 32 x 128 = 524,288 FLOPs at
    # 0.96 TFLOPS = 0.55 us: memory-bound, as on the GPU.
    assert h.ctx_s == pytest.approx(524_288 / 17.6e9)
    # q, k, v of 32 layers x (32 + 2 x 32) heads x 128 x 2 B = 786,432 B over PCIe Gen3 (16 GB/s).
    assert h.token_s == pytest.approx(786_432 / 16e9)
    with pytest.raises(InputError, match="host_mem_gb_s"):
        host_attention(**{**_kw(), "host_mem_bw_bytes_s": 0.0})


def _kw() -> dict[str, float]:
    return {
        "layers": 32,
        "heads": 32,
        "kv_heads": 32,
        "head_dim": 128,
        "kv_bytes_per_token": 524_288,
        "dtype_bytes": 2,
        "host_mem_bw_bytes_s": 1e10,
        "host_cpu_flops": 1e12,
        "host_link_bw_bytes_s": 1e10,
        "bandwidth_efficiency": 0.5,
    }


GPU_TOKENS = 1_500
INNER = RooflineModel(T4, L2)
HYBRID = HybridStepModel(INNER, GPU_TOKENS, _t4_host())
SERIAL = HybridStepModel(INNER, GPU_TOKENS, _t4_host(), overlap=False)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_no_host_context_is_the_gpu_model_bit_for_bit() -> None:
    for args in ((0, 0.0, 1, 100), (512, 512 * 256.5, 3, 1_500), (0, 0.0, 4, 0)):
        assert _bits(HYBRID.step_time(*args)) == _bits(INNER.step_time(*args))
        assert _bits(SERIAL.step_time(*args)) == _bits(INNER.step_time(*args))


def test_host_context_step_by_hand() -> None:
    # 4 decodes over 4,000 tokens of context: 1,500 on the GPU, 2,500 on the host, attended by
    # 4 x 2,500 / 4,000 = 2.5 decodes' worth of tokens on the CPU.
    h = _t4_host()
    gpu = INNER.step_time(0, 0.0, 4, 1_500)
    cpu = 2_500 * h.ctx_s + 2.5 * h.token_s  # 74.5 ms + 0.12 ms
    assert HYBRID.parts(0, 0.0, 4, 4_000) == pytest.approx((gpu, cpu), rel=1e-12)
    assert HYBRID.step_time(0, 0.0, 4, 4_000) == pytest.approx(max(gpu, cpu), rel=1e-12)
    assert SERIAL.step_time(0, 0.0, 4, 4_000) == pytest.approx(gpu + cpu, rel=1e-12)
    assert cpu > gpu  # past the break-even: the CPU sets the pace
    # Break-even: the host context the CPU hides under one GPU step.
    hidden = (gpu - 1.0 * h.token_s) / h.ctx_s
    assert 1_500 < hidden < 2_500


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from([HYBRID, SERIAL]),
    n=st.integers(min_value=0, max_value=256),
    ctx=st.lists(st.integers(min_value=0, max_value=200_000), min_size=1, max_size=16),
)
def test_decode_step_times_bitwise_equal_step_time(
    model: HybridStepModel, n: int, ctx: list[int]
) -> None:
    arr = np.array(ctx, dtype=np.int64)
    for c, t in zip(arr, model.decode_step_times(n, arr), strict=True):
        assert _bits(float(t)) == _bits(model.step_time(0, 0.0, n, int(c)))


SCENARIO = """\
workload: {synthetic: {num_requests: 10}}
cluster:
  - gpu: T4
    model: Llama-2-7B
    engine: {gpu_memory_utilization: 0.95, max_num_batched_tokens: 2048}
    offload: {host_kv_gib: 32}
"""


def test_scenario_offload_adds_host_blocks_and_the_hybrid_model() -> None:
    sc = parse_scenario(SCENARIO, "s.yaml")
    assert scenario_problems(sc, workload=False) == []
    g = sc.cluster[0]
    # 32 GiB / (524,288 B x 16 tokens) = 4,096 host blocks beside the GPU's.
    assert group_host_kv_blocks(g) == 4_096
    assert group_kv_blocks(g) == group_gpu_kv_blocks(g) + 4_096
    (inst,) = build_instances(sc.cluster, sc.policies)
    assert inst.kv.num_blocks == group_kv_blocks(g)
    assert isinstance(inst.step_model, HybridStepModel)
    assert inst.step_model.gpu_ctx_tokens == group_gpu_kv_blocks(g) * 16


@pytest.mark.parametrize(
    ("offload", "message"),
    [
        ("{host_kv_gib: 64}", "offload.host_kv_gib: 64 GiB is more than T4's host memory share"),
        ("{host_kv_gib: 0}", "offload.host_kv_gib: Input should be greater than 0"),
    ],
)
def test_bad_offload_names_the_field(offload: str, message: str) -> None:
    text = SCENARIO.replace("{host_kv_gib: 32}", offload)
    try:
        sc = parse_scenario(text, "s.yaml")
    except InputError as e:
        assert message in str(e)
        return
    (loc, msg), *_ = scenario_problems(sc, workload=False)
    assert message in ".".join(map(str, loc)) + ": " + msg


def test_offload_needs_a_host_where_none_is_catalogued() -> None:
    text = (
        "workload: {synthetic: {num_requests: 1}}\n"
        "cluster: [{gpu: H200, offload: {host_kv_gib: 8}}]"
    )
    (loc, msg), *_ = scenario_problems(parse_scenario(text), workload=False)
    assert loc == ("cluster", 0, "offload", "host_mem_gb_s") and "no host is catalogued" in msg
    ok = text.replace("host_kv_gib: 8", "host_kv_gib: 8, host_mem_gb_s: 100, host_cpu_tflops: 2")
    assert scenario_problems(parse_scenario(ok), workload=False) == []


def _seq(prompt: int) -> Seq:
    r = Request(id=0, arrival_s=0.0, prompt_tokens=prompt, output_tokens=10)
    s = Seq(req=r, rec=new_record(r))
    s.target = prompt
    return s


def test_apex_admits_only_what_the_gpu_step_hides() -> None:
    sc = parse_scenario(SCENARIO, "s.yaml")
    (inst,) = build_instances(sc.cluster, sc.policies)
    apex = APEXAdmission()
    g = inst.step_model.gpu_ctx_tokens
    model = inst.step_model
    # An idle engine: a prompt that fits the GPU's KV is admitted.
    assert apex.admit(_seq(g - 100), 1, inst)
    # A prompt spilling h tokens to the host: admitted iff its CPU part <= its GPU part.
    for spill in (100, 1_000, 3_000, 20_000):
        gpu, cpu = model.parts(0, 0.0, 1, g + spill)
        assert apex.admit(_seq(g + spill), 1, inst) == (cpu <= gpu), spill
    assert not apex.admit(_seq(10), inst.kv.free + 1, inst)  # no free blocks: no
    assert APEXAdmission(slack=10.0).admit(_seq(g + 3_000), 1, inst)
    with pytest.raises(InputError, match="slack"):
        APEXAdmission(slack=-1)
