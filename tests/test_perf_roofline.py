"""Roofline step time and KV capacity, against figures derived by hand in the comments."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.errors import InputError
from fleetsched.perf import (
    RooflineModel,
    get_gpu,
    get_model,
    kv_bytes_per_token_per_gpu,
    kv_capacity_blocks,
)

H100 = get_gpu("H100-SXM")
L8B = get_model("Llama-3.1-8B")
L70B = get_model("Llama-3.1-70B")


def test_empty_step_is_free() -> None:
    m = RooflineModel(H100, L8B)
    assert m.step_time(0, 0.0, 0, 0) == 0.0
    out = m.decode_step_times(0, np.array([0, 5, 10]))
    assert out.dtype == np.float64 and out.tolist() == [0.0, 0.0, 0.0]


def test_batch1_decode_8b_h100_is_weight_read() -> None:
    # 8.03e9 params * 2 B = 16.06e9 B read once; / 3.35e12 B/s = 4.794 ms; + 1.5 ms overhead.
    expected = 16.06e9 / 3.35e12 + 0.0015  # 6.294 ms
    t = RooflineModel(H100, L8B).step_time(0, 0.0, 1, 100)
    assert t == pytest.approx(expected, rel=0.02)
    assert t == pytest.approx(0.006294, rel=1e-3)


def test_prefill_4096_8b_h100_is_compute_bound() -> None:
    # Linear FLOPs: 2 * 8.03e9 * 4096 = 6.578e13 -> / 989e12 = 66.51 ms (weights alone 4.79 ms).
    # One chunk, no context: pairs = 4096 * (0 + 4097 / 2) = 8,390,656.
    # Attention: 4 * 32 layers * 32 heads * 128 = 524,288 FLOP/pair -> 4.399e12 FLOP = 4.448 ms.
    # Total 66.51 + 4.45 + 1.5 = 72.46 ms.
    pairs = 4096 * (0 + (4096 + 1) / 2)
    assert pairs == 8_390_656
    m = RooflineModel(H100, L8B)
    t = m.step_time(4096, pairs, 0, 0)
    assert t == pytest.approx(0.06651 + 0.004448 + 0.0015, rel=1e-3)
    # compute-bound: halving compute efficiency nearly doubles the non-overhead time
    slow = RooflineModel(H100, L8B, compute_efficiency=0.5).step_time(4096, pairs, 0, 0)
    assert slow - 0.0015 == pytest.approx(2 * (t - 0.0015), rel=1e-12)


def test_decode_256x1k_8b_h100_is_kv_bound() -> None:
    # ctx_sum = 256 * 1024 = 262,144 tokens; KV read 131,072 B * 262,144 = 34.36e9 B -> 10.257 ms
    # (attention FLOPs 524,288 * 262,144 = 1.37e11 -> 0.139 ms: memory-bound).
    # Linear: weights 4.794 ms > FLOPs 2 * 8.03e9 * 256 / 989e12 = 4.157 ms: memory-bound.
    # Total 4.794 + 10.257 + 1.5 = 16.551 ms.
    m = RooflineModel(H100, L8B)
    t = m.step_time(0, 0.0, 256, 256 * 1024)
    assert t == pytest.approx(0.004794 + 0.010257 + 0.0015, rel=1e-3)
    # memory-bound: halving bandwidth efficiency doubles the non-overhead time
    slow = RooflineModel(H100, L8B, bandwidth_efficiency=0.5).step_time(0, 0.0, 256, 256 * 1024)
    assert slow - 0.0015 == pytest.approx(2 * (t - 0.0015), rel=1e-12)


def test_tp2_halves_weights_and_adds_allreduce() -> None:
    one = RooflineModel(H100, L8B, overhead_s=0.0)
    two = RooflineModel(H100, L8B, tp=2, overhead_s=0.0)
    # batch-1 decode, no context: tp=1 is 4.794 ms of weight reads.
    t1 = one.step_time(0, 0.0, 1, 0)
    assert t1 == pytest.approx(16_060_522_496 / 3.35e12, rel=1e-12)
    # tp=2: half the weights, plus 2 * 32 all-reduces of 1 token * 4096 * 2 B with ring factor
    # 2 * (2 - 1) / 2 = 1 over 450 GB/s (18.2 ns each) and 5 us latency each:
    # 64 * (5e-6 + 8192 / 450e9) = 0.32117 ms.
    allreduce = 64 * (5e-6 + 8192 / 450e9)
    t2 = two.step_time(0, 0.0, 1, 0)
    assert t2 == pytest.approx(t1 / 2 + allreduce, rel=1e-9)
    assert allreduce == pytest.approx(3.2117e-4, rel=1e-4)
    # all-reduce grows with tokens: 1024 prompt tokens add 64 * 1024 * 8192 / 450e9 = 1.193 ms
    zero_lat = RooflineModel(H100, L8B, tp=2, overhead_s=0.0, allreduce_latency_s=0.0)
    big = zero_lat.step_time(1024, 0.0, 0, 0)
    assert big == pytest.approx(
        max(16_060_522_496 / 2 / 3.35e12, 2 * 8_030_261_248 * 1024 / 2 / 989e12)
        + 64 * 1024 * 8192 / 450e9,
        rel=1e-9,
    )


def test_tp4_ring_factor() -> None:
    # ring factor 2 * 3 / 4 = 1.5: 64 all-reduces of 8192 B * 1.5 over 450 GB/s, no latency.
    m = RooflineModel(H100, L8B, tp=4, overhead_s=0.0, allreduce_latency_s=0.0)
    weights = 16_060_522_496 / 4 / 3.35e12
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(weights + 64 * 8192 * 1.5 / 450e9)


def test_moe_reads_only_touched_experts() -> None:
    mix = get_model("Mixtral-8x7B")
    m = RooflineModel(H100, mix, overhead_s=0.0)
    # 1 token, top-2 of 8: dense part + 2/8 of experts = exactly the active params
    # 12,879,925,248 * 2 B = 25.76e9 B / 3.35e12 = 7.689 ms.
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(12_879_925_248 * 2 / 3.35e12, rel=1e-12)
    # 2 tokens touch at most 4 experts: dense + half the experts.
    half = (mix.dense_params + mix.expert_params / 2) * 2 / 3.35e12
    assert m.step_time(0, 0.0, 2, 0) == pytest.approx(half, rel=1e-12)
    # 4+ tokens can touch all 8 experts: all 93.4 GB = 27.88 ms.
    assert m.step_time(0, 0.0, 4, 0) == pytest.approx(93_405_585_408 / 3.35e12, rel=1e-12)
    assert m.step_time(0, 0.0, 64, 0) == m.step_time(0, 0.0, 4, 0)


def test_kv_bytes_per_gpu_and_replication() -> None:
    assert RooflineModel(H100, L8B).kv_bytes_per_token_per_gpu == 131072
    assert RooflineModel(H100, L8B, tp=2).kv_bytes_per_token_per_gpu == 65536
    assert RooflineModel(H100, L70B, tp=8).kv_bytes_per_token_per_gpu == 327680 // 8
    # gemma-3-270m has 1 KV head: with tp=2 each GPU keeps a full copy.
    gemma = get_model("gemma-3-270m")
    assert kv_bytes_per_token_per_gpu(gemma, 2) == gemma.kv_bytes_per_token == 18432


def test_invalid_tp_and_options() -> None:
    with pytest.raises(InputError, match="28 attention heads"):
        RooflineModel(H100, get_model("Qwen2.5-7B"), tp=8)
    with pytest.raises(InputError, match="tp must be"):
        RooflineModel(H100, L8B, tp=0)
    with pytest.raises(InputError, match="compute_efficiency"):
        RooflineModel(H100, L8B, compute_efficiency=0.0)
    with pytest.raises(InputError, match="bandwidth_efficiency"):
        RooflineModel(H100, L8B, bandwidth_efficiency=1.5)
    with pytest.raises(InputError, match="overhead_s"):
        RooflineModel(H100, L8B, overhead_s=-1.0)


def test_kv_capacity_8b_h100_hand_check() -> None:
    # usable  = 0.9 * 80 GiB                      = 77,309,411,328 B
    # weights = 8,030,261,248 * 2                  = 16,060,522,496 B
    # reserve = 1 GiB + 8192 * (2*14336 + 4*4096) * 2 = 1,073,741,824 + 738,197,504
    #                                              =  1,811,939,328 B
    # free    = 59,436,949,504 B; block = 131,072 B * 16 = 2,097,152 B
    # blocks  = floor(28,341.7) = 28,341  (453,456 tokens)
    assert kv_capacity_blocks(H100, L8B, 1, 0.9, 16) == 28341
    # with no activation reserve: floor(61,248,888,832 / 2,097,152) = floor(29,205.7)
    assert kv_capacity_blocks(H100, L8B, activation_reserve_bytes=0) == 29205
    # 32-token blocks hold twice the tokens each: half as many (floor(14,170.8)).
    assert kv_capacity_blocks(H100, L8B, block_tokens=32) == 14170


def test_kv_capacity_70b_needs_tp2_on_80gb() -> None:
    with pytest.raises(InputError) as exc:
        kv_capacity_blocks(H100, L70B, tp=1)
    msg = str(exc.value)
    for part in ("Llama-3.1-70B", "H100-SXM", "tp=1", "GiB", "131.4"):
        assert part in msg
    # tp=2: free = 77,309,411,328 - 70,553,706,496 - (1 GiB + 8192 * 90,112 * 2 / 2)
    #            = 4,943,765,504 B; block = 327,680 / 2 * 16 = 2,621,440 B -> 1,885 blocks.
    assert kv_capacity_blocks(H100, L70B, tp=2) == 1885
    # Not even a 141 GiB H200 holds 131.4 GiB of weights at 0.9 utilisation (126.9 GiB) ...
    with pytest.raises(InputError, match="H200"):
        kv_capacity_blocks(get_gpu("H200"), L70B, tp=1)
    # ... but a 192 GiB MI300X does: 0.9 * 192 GiB = 185,542,587,187 B, minus 141,107,412,992 B
    # of weights, minus 1 GiB + 8192 * 90,112 * 2 = 2,550,136,832 B of reserve, leaves
    # 41,885,037,363 B; / (327,680 * 16 = 5,242,880 B) = 7,988.8 -> 7,988 blocks.
    assert kv_capacity_blocks(get_gpu("MI300X"), L70B, tp=1) == 7988


def test_kv_capacity_rejects_bad_options() -> None:
    with pytest.raises(InputError, match="gpu_memory_utilization"):
        kv_capacity_blocks(H100, L8B, gpu_memory_utilization=0)
    with pytest.raises(InputError, match="block_tokens"):
        kv_capacity_blocks(H100, L8B, block_tokens=0)
    with pytest.raises(InputError, match="activation_reserve_bytes"):
        kv_capacity_blocks(H100, L8B, activation_reserve_bytes=-1)


# ---- properties ------------------------------------------------------------------------------

CONFIGS = [
    RooflineModel(H100, L8B),
    RooflineModel(H100, L8B, tp=2),
    RooflineModel(get_gpu("A10G"), get_model("Qwen2.5-7B"), tp=4, compute_efficiency=0.7),
    RooflineModel(get_gpu("MI300X"), get_model("Mixtral-8x7B"), tp=2, bandwidth_efficiency=0.8),
    RooflineModel(get_gpu("L40S"), get_model("gemma-3-270m"), tp=2, overhead_s=0.0),
    RooflineModel(get_gpu("A100-80GB"), L70B, tp=8, allreduce_latency_s=0.0),
]

counts = st.integers(min_value=0, max_value=2**20)
ctx_sums = st.integers(min_value=0, max_value=2**40)
pair_counts = st.floats(min_value=0.0, max_value=1e13, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(CONFIGS),
    p=counts,
    pairs=pair_counts,
    n=counts,
    c=ctx_sums,
    which=st.integers(min_value=0, max_value=3),
    inc=st.integers(min_value=1, max_value=2**20),
)
def test_step_time_monotone_in_each_argument(
    model: RooflineModel, p: int, pairs: float, n: int, c: int, which: int, inc: int
) -> None:
    args: list[float] = [p, pairs, n, c]
    bigger = list(args)
    bigger[which] = args[which] + (float(inc) if which == 1 else inc)
    base = model.step_time(*args)  # type: ignore[arg-type]
    more = model.step_time(*bigger)  # type: ignore[arg-type]
    assert 0.0 <= base <= more


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(CONFIGS),
    n=st.integers(min_value=0, max_value=4096),
    ctx=st.lists(st.integers(min_value=0, max_value=2**62), min_size=0, max_size=20),
)
def test_decode_step_times_bitwise_equal_step_time(
    model: RooflineModel, n: int, ctx: list[int]
) -> None:
    arr = np.array(ctx, dtype=np.int64)
    out = model.decode_step_times(n, arr)
    assert out.dtype == np.float64 and out.shape == arr.shape
    for c, t in zip(arr, out, strict=True):
        assert _bits(float(t)) == _bits(model.step_time(0, 0.0, n, int(c)))


def test_decode_step_times_accepts_lists_and_float_arrays() -> None:
    m = CONFIGS[1]
    a = m.decode_step_times(7, np.array([1.0, 2048.0]))
    b = m.decode_step_times(7, [1, 2048])  # type: ignore[arg-type]
    assert a.tobytes() == b.tobytes()
    assert a[1] == m.step_time(0, 0.0, 7, 2048)
