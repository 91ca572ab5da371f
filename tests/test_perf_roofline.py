"""Roofline step time and KV capacity, against figures derived by hand in the comments."""

from __future__ import annotations

import struct
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.errors import InputError
from fleetsched.perf import (
    GPU,
    RooflineModel,
    get_gpu,
    get_model,
    kv_bytes_per_token_per_gpu,
    kv_capacity_blocks,
)
from fleetsched.perf.calibration import CALIBRATED, DATASHEET
from fleetsched.perf.roofline import gemm_time_s

H100 = get_gpu("H100-SXM")
L8B = get_model("Llama-3.1-8B")
L70B = get_model("Llama-3.1-70B")

#: Datasheet roofline: peaks reached, no fixed costs (elementwise traffic at peak bandwidth).
PURE = asdict(DATASHEET)

# Llama-3.1-8B figures used below: embedding table = LM head = 128,256 x 4,096 = 525,336,576
# parameters (untied: two of them); transformer layers 8,030,261,248 - 2 x 525,336,576 =
# 6,979,588,096 parameters = 13,959,176,192 B; LM head 1,050,673,152 B. Elementwise traffic per
# token and layer: 2 B x (7 x 4096 + 3 x 14336 + 2 x (32 + 8) x 128) = 163,840 B, x 32 layers.
TABLE = 128_256 * 4_096
LAYER_PARAMS = 8_030_261_248 - 2 * TABLE
ELEMENTWISE_B = 32 * 163_840

# Calibrated H100 knobs (calibration.py): F = 989e12 x 0.763, BW = 3.35e12 x 0.935, elementwise
# BW = 3.35e12 x 0.556, half-tokens 163, GEMM latency 6.99 us (x (4 x 32 + 1) = 129 kernels),
# elementwise latency 1.61 us (x 5 x 32 = 160 kernels), overhead 1 ms.
F = 989e12 * 0.763
BW = 3.35e12 * 0.935
FIXED = 129 * 6.99e-6 + 160 * 1.61e-6 + 1e-3  # 2.159 ms
PER_TOKEN = 8_192 / BW + ELEMENTWISE_B / (3.35e12 * 0.556)  # embedding row + elementwise


def test_empty_step_is_free() -> None:
    m = RooflineModel(H100, L8B)
    assert m.step_time(0, 0.0, 0, 0) == 0.0
    out = m.decode_step_times(0, np.array([0, 5, 10]))
    assert out.dtype == np.float64 and out.tolist() == [0.0, 0.0, 0.0]


def test_defaults_are_the_calibrated_knobs() -> None:
    assert RooflineModel(H100, L8B).params == CALIBRATED["H100-SXM"]
    # borrowed: an H200 is H100 silicon with faster memory
    assert RooflineModel(get_gpu("H200"), L8B).params == CALIBRATED["H100-SXM"]
    m = RooflineModel(H100, L8B, overhead_s=0.002, compute_efficiency=None)
    assert m.params.overhead_s == 0.002
    assert m.params.compute_efficiency == CALIBRATED["H100-SXM"].compute_efficiency


def test_batch1_decode_8b_h100_is_weight_read() -> None:
    # Layers 13,959,176,192 B / BW = 4.4566 ms; LM head 1,050,673,152 B / BW = 0.3354 ms (its
    # FLOPs for one position are 0.0006 ms); per token 2.817 us; 100 tokens of KV read:
    # 100 x 131,072 B / BW = 0.0042 ms; fixed 2.1593 ms. Total 6.9583 ms.
    expected = 13_959_176_192 / BW + 1_050_673_152 / BW + PER_TOKEN + 100 * 131_072 / BW + FIXED
    t = RooflineModel(H100, L8B).step_time(0, 0.0, 1, 100)
    assert t == pytest.approx(expected, rel=1e-12)
    assert t == pytest.approx(0.0069583, rel=1e-4)


def test_prefill_4096_8b_h100_is_compute_bound() -> None:
    # Layers: 2 x 6,979,588,096 x (4096 + 163) / F = 78.786 ms (> 4.457 ms of weight reads).
    # LM head on the one position that samples: max(0.3354 ms, 2 x 525,336,576 x 164 / F) =
    # 0.3354 ms. Attention: 8,390,656 pairs x 524,288 FLOP / F = 5.830 ms. Per token: 4096 x
    # 2.817 us = 11.540 ms. Fixed 2.159 ms. Total 98.650 ms.
    pairs = 4096 * (0 + (4096 + 1) / 2)
    assert pairs == 8_390_656
    layers = 2 * LAYER_PARAMS * (4096 + 163) / F
    expected = layers + 1_050_673_152 / BW + pairs * 524_288 / F + 4096 * PER_TOKEN + FIXED
    m = RooflineModel(H100, L8B)
    t = m.step_time(4096, pairs, 0, 0)
    assert t == pytest.approx(expected, rel=1e-12)
    assert t == pytest.approx(0.098650, rel=1e-4)
    # compute-bound: halving compute efficiency doubles the layers' and attention's time, and
    # tips the LM head over to compute (2 x 525,336,576 x 164 / (F / 2) = 0.4511 ms > 0.3354 ms)
    slow = RooflineModel(H100, L8B, compute_efficiency=0.763 / 2).step_time(4096, pairs, 0, 0)
    head = 2 * TABLE * 164 / (F / 2) - 1_050_673_152 / BW
    assert slow - t == pytest.approx(layers + pairs * 524_288 / F + head, rel=1e-9)


def test_decode_256x1k_8b_h100() -> None:
    # 256 decodes: the layers' GEMMs now cost more than their weight reads,
    # 2 x 6,979,588,096 x (256 + 163) / F = 7.751 ms > 4.457 ms; LM head 2 x 525,336,576 x 419 / F
    # = 0.583 ms > 0.335 ms. KV: 262,144 context tokens x 131,072 B / BW = 10.970 ms. Per token
    # 256 x 2.817 us = 0.721 ms; fixed 2.159 ms. Total 22.185 ms.
    expected = (
        2 * LAYER_PARAMS * 419 / F
        + 2 * TABLE * 419 / F
        + 256 * PER_TOKEN
        + FIXED
        + 262_144 * 131_072 / BW
    )
    m = RooflineModel(H100, L8B)
    t = m.step_time(0, 0.0, 256, 256 * 1024)
    assert t == pytest.approx(expected, rel=1e-12)
    assert t == pytest.approx(0.022185, rel=1e-4)
    # Halving bandwidth efficiency doubles the KV read and the embedding rows, and makes the
    # layers and the LM head weight-bound again: 2 x 4.457 = 8.913 ms > 7.751 ms, and
    # 2 x 0.335 = 0.671 ms > 0.583 ms.
    slow = RooflineModel(H100, L8B, bandwidth_efficiency=0.935 / 2)
    kv = 262_144 * 131_072 / BW
    layers = 2 * 13_959_176_192 / BW - 2 * LAYER_PARAMS * 419 / F
    head = 2 * 1_050_673_152 / BW - 2 * TABLE * 419 / F
    more = kv + 256 * 8_192 / BW + layers + head
    assert slow.step_time(0, 0.0, 256, 256 * 1024) - t == pytest.approx(more, rel=1e-9)


# ---- item 3 of issue 10: no double counts of the embedding table -----------------------------


def test_decode_reads_embedding_rows_not_the_table() -> None:
    # Datasheet roofline, batch-1 decode of Llama-3.1-8B on H100: the weights read are the layers
    # and the LM head (8,030,261,248 - 525,336,576 = 7,504,924,672 parameters = 15,009,849,344 B)
    # plus the one token's embedding row (8,192 B), not the whole 8.03e9-parameter checkpoint.
    m = RooflineModel(H100, L8B, **PURE)
    elementwise = ELEMENTWISE_B / 3.35e12
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(
        (15_009_849_344 + 8_192) / 3.35e12 + elementwise, rel=1e-12
    )  # 4.4828 ms (the whole checkpoint would be 4.794 ms)


def test_prefill_flops_lm_head_only_where_a_token_is_sampled() -> None:
    # Datasheet roofline, one 4096-token prefill: the layers compute 2 x 6,979,588,096 x 4096
    # FLOPs; the embedding lookup none; the LM head runs on the one position that samples
    # (2 x 525,336,576 FLOPs < its 1.05 GB weight read) -- not 2 x 8.03e9 x 4096 FLOPs.
    m = RooflineModel(H100, L8B, **PURE)
    t = m.step_time(4096, 0.0, 0, 0)
    expected = (
        2 * LAYER_PARAMS * 4096 / 989e12
        + 1_050_673_152 / 3.35e12
        + 4096 * (8_192 + ELEMENTWISE_B) / 3.35e12
    )
    assert t == pytest.approx(expected, rel=1e-12)  # 57.81 ms + 0.31 ms + 6.42 ms
    # A decode riding along adds one sampled position: exactly its share of the LM head and
    # layers (still compute-bound), not a whole model's FLOPs.
    both = m.step_time(4096, 0.0, 1, 0)
    assert both - t == pytest.approx(
        2 * LAYER_PARAMS / 989e12 + (8_192 + ELEMENTWISE_B) / 3.35e12, rel=1e-9
    )


def test_tied_embeddings_are_read_once_as_the_lm_head() -> None:
    # gemma-3-270m ties its LM head to the 262,144 x 640 = 167,772,160-parameter embedding
    # table; its 268,098,176 parameters count the table once. A batch-1 decode reads the layers
    # (268,098,176 - 167,772,160 = 100,326,016 parameters), the table once as the LM head, and
    # one embedding row: 268,098,176 x 2 B + 1,280 B.
    gemma = get_model("gemma-3-270m")
    assert gemma.tie_word_embeddings and not L8B.tie_word_embeddings
    m = RooflineModel(H100, gemma, **PURE)
    elementwise = 18 * 2 * (7 * 640 + 3 * 2048 + 2 * (4 + 1) * 256) / 3.35e12
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(
        (268_098_176 * 2 + 1_280) / 3.35e12 + elementwise, rel=1e-12
    )
    # A 65,536-token prefill computes the layers for every token (2 x 100,326,016 x 65,536 FLOPs
    # = 13.30 ms, over their 0.060 ms read) and the tied LM head for one position (its 0.100 ms
    # read); the table's 167.8M parameters are not multiplied by every token (that would add
    # 2 x 167,772,160 x 65,536 / 989e12 = 22.2 ms).
    t = m.step_time(65_536, 0.0, 0, 0)
    expected = (
        2 * 100_326_016 * 65_536 / 989e12
        + 167_772_160 * 2 / 3.35e12
        + 65_536 * (1_280 / 3.35e12 + elementwise)
    )
    assert t == pytest.approx(expected, rel=1e-12)


def test_linear_term_is_gemm_time_of_layers_and_lm_head() -> None:
    # The roofline folds gemm_time_s (the expression `fleetsched perf check` compares with
    # measured kernels) into its constants: a decode step is gemm_time_s of the layers (4 GEMMs
    # each, 128 in all) plus gemm_time_s of the LM head, plus the per-token terms and the fixed
    # costs other than GEMM latencies (160 elementwise kernels, overhead).
    p = CALIBRATED["H100-SXM"]
    m = RooflineModel(H100, L8B)
    for tokens in (1, 7, 64, 163, 300, 1000, 8192):
        layers = gemm_time_s(tokens, 2 * LAYER_PARAMS, 2 * LAYER_PARAMS, 128, H100, p)
        head = gemm_time_s(tokens, 2 * TABLE, 2 * TABLE, 1, H100, p)
        rest = tokens * PER_TOKEN + 160 * 1.61e-6 + 1e-3
        assert m.step_time(0, 0.0, tokens, 0) == pytest.approx(layers + head + rest, rel=1e-12)


def test_tp2_halves_weights_and_adds_allreduce() -> None:
    # Datasheet knobs, batch-1 decode with no context. tp=1: 15,009,849,352 B (layers, LM head,
    # one row) + elementwise 5,242,880 B, all / 3.35e12.
    one = RooflineModel(H100, L8B, **PURE)
    t1 = one.step_time(0, 0.0, 1, 0)
    assert t1 == pytest.approx((15_009_849_344 + 8_192 + 5_242_880) / 3.35e12, rel=1e-12)
    # tp=2: half the weights and the row; elementwise 32 x 2 x (7 x 4096 + 3 x 14336 / 2 +
    # 2 x 40 x 128 / 2) = 3,538,944 B; plus 2 x 32 all-reduces of 1 token x 4096 x 2 B with ring
    # factor 2 x (2 - 1) / 2 = 1 over 450 GB/s, and 9 us latency each (calibrated):
    # 64 x (9e-6 + 8192 / 450e9) = 0.57717 ms.
    two = RooflineModel(H100, L8B, tp=2, **{**PURE, "allreduce_latency_s": 9e-6})
    allreduce = 64 * (9e-6 + 8192 / 450e9)
    assert allreduce == pytest.approx(5.7717e-4, rel=1e-4)
    weights = (15_009_849_344 + 8_192) / 2 / 3.35e12 + 3_538_944 / 3.35e12
    assert two.step_time(0, 0.0, 1, 0) == pytest.approx(weights + allreduce, rel=1e-12)
    # the all-reduce traffic grows with tokens and shrinks with its efficiency: 1024 prompt
    # tokens at 0.5 efficiency add 64 x 1024 x 8192 / (450e9 x 0.5) = 2.386 ms over latency.
    half = RooflineModel(H100, L8B, tp=2, **{**PURE, "allreduce_bandwidth_efficiency": 0.5})
    assert half.step_time(1024, 0.0, 0, 0) - one_tp2_no_comm(1024) == pytest.approx(
        64 * 1024 * 8192 / 225e9, rel=1e-9
    )


def one_tp2_no_comm(tokens: int) -> float:
    """tp=2, datasheet knobs, without the all-reduce: layers compute-bound at 1024 tokens."""
    layers = max(13_959_176_192 / 2 / 3.35e12, 2 * LAYER_PARAMS * tokens / 2 / 989e12)
    head = 1_050_673_152 / 2 / 3.35e12
    per_token = 8_192 / 2 / 3.35e12 + 32 * 2 * (7 * 4096 + 3 * 7168 + 2 * 40 * 64) / 3.35e12
    return layers + head + tokens * per_token


def test_tp4_ring_factor() -> None:
    # ring factor 2 x 3 / 4 = 1.5: 64 all-reduces of 8192 B x 1.5 over 450 GB/s, no latency;
    # elementwise 32 x 2 x (7 x 4096 + 3 x 14336 / 4 + 2 x 40 x 128 / 4) = 2,686,976 B.
    m = RooflineModel(H100, L8B, tp=4, **PURE)
    weights = (15_009_849_344 + 8_192) / 4 / 3.35e12 + 2_686_976 / 3.35e12
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(weights + 64 * 8192 * 1.5 / 450e9)


def test_moe_reads_only_touched_experts() -> None:
    mix = get_model("Mixtral-8x7B")
    m = RooflineModel(H100, mix, **PURE)
    # Mixtral's layers: dense part (attention, norms, routers) and 8 experts per layer; the
    # embedding table and LM head are 32,000 x 4,096 = 131,072,000 parameters each.
    table = 32_000 * 4_096
    dense_layers = mix.dense_params - 2 * table
    per_token = (4_096 * 2 + 32 * 2 * (7 * 4096 + 3 * 14336 * 2 + 2 * 40 * 128)) / 3.35e12
    # 1 token, top-2 of 8: dense layers + 2/8 of the experts + the LM head.
    one = (dense_layers + mix.expert_params / 4 + table) * 2 / 3.35e12
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(one + per_token, rel=1e-12)
    # 2 tokens touch at most 4 experts: dense + half the experts.
    two = (dense_layers + mix.expert_params / 2 + table) * 2 / 3.35e12
    assert m.step_time(0, 0.0, 2, 0) == pytest.approx(two + 2 * per_token, rel=1e-12)
    # 4+ tokens can touch all 8 experts: every weight but the embedding table.
    four = (mix.total_params - table) * 2 / 3.35e12
    assert m.step_time(0, 0.0, 4, 0) == pytest.approx(four + 4 * per_token, rel=1e-12)
    assert m.step_time(0, 0.0, 64, 0) - m.step_time(0, 0.0, 4, 0) == pytest.approx(
        60 * per_token, rel=1e-9
    )


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
    with pytest.raises(InputError, match="compute_half_tokens"):
        RooflineModel(H100, L8B, compute_half_tokens=float("inf"))
    with pytest.raises(InputError, match="unknown step-time option"):
        RooflineModel(H100, L8B, overhead_ms=1.0)
    with pytest.raises(InputError, match="overhead_s must be a number"):
        RooflineModel(H100, L8B, overhead_s="fast")  # type: ignore[arg-type]


def test_gpu_outside_the_catalog_needs_every_knob() -> None:
    custom = GPU("custom", 2e15, 8e12, 180 * 2**30, 900e9, 64e9)
    with pytest.raises(InputError, match="no calibrated step-time knobs for GPU 'custom'"):
        RooflineModel(custom, L8B, overhead_s=0.001)
    m = RooflineModel(custom, L8B, **PURE)
    # datasheet knobs: the layers, LM head and one row at 8 TB/s, plus elementwise traffic
    assert m.step_time(0, 0.0, 1, 0) == pytest.approx(
        (15_009_849_344 + 8_192 + ELEMENTWISE_B) / 8e12, rel=1e-12
    )


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
    RooflineModel(get_gpu("A40"), L8B, compute_half_tokens=0.0),
    RooflineModel(H100, L8B, **PURE),
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


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(CONFIGS),
    n=st.integers(min_value=1, max_value=4096),
    c=st.integers(min_value=0, max_value=2**30),
    d=st.integers(min_value=1, max_value=2**20),
)
def test_decode_step_affine_in_context_sum(model: RooflineModel, n: int, c: int, d: int) -> None:
    # For a fixed batch, each extra context token costs the same: t(c) = t(0) + c * slope, so
    # equal steps in the context sum give equal increments (the engine computes runs of decode
    # steps in closed form from this).
    t0, t1, t2 = (model.step_time(0, 0.0, n, c + k * d) for k in (0, 1, 2))
    assert t1 - t0 == pytest.approx(t2 - t1, rel=1e-6, abs=1e-15)
    slope = (model.step_time(0, 0.0, n, 2**20) - model.step_time(0, 0.0, n, 0)) / 2**20
    assert t1 - t0 == pytest.approx(d * slope, rel=1e-6, abs=1e-15)
