"""Precision (weight, activation, KV dtypes) and KV compression: bytes per token, capacity in
blocks and step times against figures derived by hand in the comments (issue 19, item 1)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import parse_scenario
from fleetsched.errors import InputError
from fleetsched.perf import (
    KVCompression,
    Precision,
    RooflineModel,
    get_gpu,
    get_model,
    kv_bytes_per_token_per_gpu,
    kv_capacity_blocks,
    weight_bytes,
)
from fleetsched.sim.build import build_instances, group_kv_blocks
from fleetsched.sim.check import scenario_problems

H100 = get_gpu("H100-SXM")
A100 = get_gpu("A100-80GB")
L8B = get_model("Llama-3.1-8B")
L70B = get_model("Llama-3.1-70B")
GiB = 2**30

# Llama-3.1-8B: embedding table = LM head = 128,256 x 4,096 parameters (two tables); the
# transformer layers hold the other 6,979,588,096 parameters.
TABLE = 128_256 * 4_096
LAYER_PARAMS = 8_030_261_248 - 2 * TABLE
ELEMENTWISE_B = 32 * 163_840  # bytes per token through the elementwise kernels (bf16)

# Calibrated H100 and A100 knobs (calibration.py).
BW_H100 = 3.35e12 * 0.935
BW_A100 = 2.039e12 * 0.787


# --------------------------------------------------------------------------- bytes


def test_kv_bytes_per_token_by_dtype() -> None:
    # 2 (K, V) x 32 layers x 8 KV heads = 512 head vectors of 128 values per token.
    assert kv_bytes_per_token_per_gpu(L8B, 1, "bf16") == 512 * 128 * 2 == 131_072
    assert kv_bytes_per_token_per_gpu(L8B, 1, "fp8") == 512 * 128 == 65_536
    # int4: 64 bytes of values + an fp16 scale and an fp16 zero per head vector.
    assert kv_bytes_per_token_per_gpu(L8B, 1, "int4") == 512 * (64 + 4) == 34_816
    # tp=2 splits the KV heads; tp=16 > 8 KV heads of the 70B keeps one head per rank.
    assert kv_bytes_per_token_per_gpu(L8B, 2, "int4") == 256 * 68
    assert kv_bytes_per_token_per_gpu(L70B, 8, "fp8") == 2 * 80 * 1 * 128
    with pytest.raises(InputError, match="kv_dtype"):
        kv_bytes_per_token_per_gpu(L8B, 1, "int8")


def test_weight_bytes_by_dtype() -> None:
    tables = 2 * TABLE * 2  # the embedding table and LM head stay bf16
    assert weight_bytes(L8B, "bf16") == L8B.weight_bytes == 16_060_522_496
    assert weight_bytes(L8B, "fp8") == tables + LAYER_PARAMS == 9_080_934_400
    assert weight_bytes(L8B, "int8") == weight_bytes(L8B, "fp8")
    # int4 + an fp16 scale and zero per 128 weights = 4.25 bits = 17/32 bytes per parameter.
    assert weight_bytes(L8B, "int4") == tables + LAYER_PARAMS * 17 // 32 == 5_809_252_480


# --------------------------------------------------------------------------- capacity

# H100, 0.9 utilisation: 72 GiB usable; the activation reserve for 8,192 batched tokens is
# 1 GiB + 8,192 x (2 x 14,336 + 4 x 4,096) x 2 B = 1,811,939,328 B.
USABLE = 0.9 * 80 * GiB
RESERVE = GiB + 8_192 * (2 * 14_336 + 4 * 4_096) * 2


def _blocks(precision: Precision | None = None) -> int:
    return kv_capacity_blocks(H100, L8B, 1, 0.9, 16, precision=precision)


def test_kv_capacity_in_blocks_by_kv_dtype() -> None:
    free = USABLE - 16_060_522_496 - RESERVE  # 59,436,949,504 B for KV
    assert _blocks() == int(free // (131_072 * 16)) == 28_341
    assert _blocks(Precision(kv_dtype="fp8")) == int(free // (65_536 * 16)) == 56_683
    assert _blocks(Precision(kv_dtype="int4")) == int(free // (34_816 * 16)) == 106_698


def test_kv_capacity_in_blocks_with_quantised_weights() -> None:
    # W4A16: the weights shrink to 5.81 GB, which leaves 10.25 GB more for bf16 KV.
    free = USABLE - 5_809_252_480 - RESERVE
    w4 = Precision(weight_dtype="int4")
    assert _blocks(w4) == int(free // (131_072 * 16)) == 33_229
    w4a4kv4 = Precision(weight_dtype="int4", activation_dtype="int4", kv_dtype="int4")
    assert kv_capacity_blocks(A100, L8B, 1, 0.9, 16, precision=w4a4kv4) == int(
        (USABLE - 5_809_252_480 - RESERVE) // (34_816 * 16)
    )


def test_kv_capacity_with_compression_layouts() -> None:
    free = USABLE - 16_060_522_496 - RESERVE
    # paged: a block of 16 tokens holds min(1, 0.3 x 2.76) = 0.828 of its bytes.
    paged = Precision(kv_compression=KVCompression(0.3))
    assert _blocks(paged) == int(free // (131_072 * 16 * 0.828)) == 34_229
    # tangram: 0.3 x 1.0645 = 0.31935 of the bytes: 3.13x the uncompressed capacity.
    tangram = Precision(kv_compression=KVCompression(0.3, "tangram"))
    assert _blocks(tangram) == int(free // (131_072 * 16 * 0.31935)) == 88_748
    # Over-allocation caps at the uncompressed size: ratio 0.5 on pages that waste 2.76x.
    assert _blocks(Precision(kv_compression=KVCompression(0.5))) == 28_341
    # Compression composes with a quantised KV cache.
    both = Precision(kv_dtype="fp8", kv_compression=KVCompression(0.3, "tangram"))
    assert _blocks(both) == int(free // (65_536 * 16 * 0.31935))


# --------------------------------------------------------------------------- step time


def _decode(m: RooflineModel, n: int, ctx: int) -> float:
    return m.step_time(0, 0.0, n, ctx)


def test_fp8_kv_decode_on_h100_reads_half_with_the_documented_overhead() -> None:
    # 256 decodes x 1,024 context: the KV read is 262,144 tokens x 131,072 B / BW in bf16 and
    # 262,144 x 65,536 B x (1 + 0.45) / BW in fp8 (FlashAttention-3 FP8; attention FLOPs at the
    # FP8 peak stay far below the read). Everything else is the same step.
    bf16 = RooflineModel(H100, L8B)
    fp8 = RooflineModel(H100, L8B, precision=Precision(kv_dtype="fp8"))
    ctx = 256 * 1_024
    want = ctx * (131_072 - 65_536 * 1.45) / BW_H100
    assert _decode(bf16, 256, ctx) - _decode(fp8, 256, ctx) == pytest.approx(want, rel=1e-9)
    assert want == pytest.approx(3.02e-3, rel=1e-2)  # of a 22.2 ms step
    # The knob overrides the default: with no overhead the read is exactly halved.
    free = RooflineModel(H100, L8B, precision=Precision(kv_dtype="fp8", kv_dequant_overhead=0))
    half = ctx * 65_536 / BW_H100
    assert _decode(bf16, 256, ctx) - _decode(free, 256, ctx) == pytest.approx(half, rel=1e-9)


def test_fp8_kv_without_fp8_tensor_cores_decodes_at_bf16_speed() -> None:
    # A100: vLLM dequantises fp8 KV inside its kernel ("no latency improvements"): overhead
    # 1.0, so half the bytes at twice the time per byte is the bf16 time.
    bf16 = RooflineModel(A100, L8B)
    fp8 = RooflineModel(A100, L8B, precision=Precision(kv_dtype="fp8"))
    for n, ctx in ((1, 100), (64, 64 * 4_000), (256, 256 * 1_024)):
        assert _decode(fp8, n, ctx) == pytest.approx(_decode(bf16, n, ctx), rel=1e-12)


def test_int4_kv_decode_reads_its_bytes_twice_over() -> None:
    bf16 = RooflineModel(A100, L8B)
    kv4 = RooflineModel(A100, L8B, precision=Precision(kv_dtype="int4"))
    ctx = 32 * 8_000
    want = ctx * (131_072 - 34_816 * 2.0) / BW_A100
    assert _decode(bf16, 32, ctx) - _decode(kv4, 32, ctx) == pytest.approx(want, rel=1e-9)


def test_w4a16_batch1_decode_reads_int4_layer_weights() -> None:
    # Weight-only int4 on H100, one decode at context 100: the layers' weights take
    # 6,979,588,096 x 17/32 B / BW = 1.184 ms instead of x 2 B; the LM head stays bf16 and
    # everything else is unchanged. The padded GEMM FLOPs, (1 + 163 x 17/64) x 2 P / F = 0.82 ms,
    # stay below the read (at bf16's full padding, 163 tokens, they would be 3.03 ms: Marlin's
    # near-4x batch-1 speedup says they are not).
    bf16 = RooflineModel(H100, L8B)
    w4 = RooflineModel(H100, L8B, precision=Precision(weight_dtype="int4"))
    want = LAYER_PARAMS * (2 - 17 / 32) / BW_H100
    assert _decode(bf16, 1, 100) - _decode(w4, 1, 100) == pytest.approx(want, rel=1e-9)
    assert _decode(w4, 1, 100) == pytest.approx(6.958e-3 - want, rel=1e-3)


def test_w4a4_prefill_on_a100_runs_the_layers_at_the_int4_peak() -> None:
    # A 4,096-token prefill is compute-bound in both: the layers cost 2 x P x (T + pad) / F,
    # F = 312e12 x 0.749 in bf16 and 1,248e12 x 0.749 at INT4 (4x), pad 78.1 in bf16 and
    # 78.1 x 17/64 for int4 weights; attention stays at the BF16 peak (int4 KV is dequantised to
    # fp16) and the LM head stays bf16.
    bf16 = RooflineModel(A100, L8B)
    w4a4 = RooflineModel(A100, L8B, precision=Precision("int4", "int4", "int4"))
    t, pairs = 4_096, 4_096 * 4_097 / 2
    f = 312e12 * 0.749
    layers = 2 * LAYER_PARAMS * (t + 78.1) / f
    layers4 = 2 * LAYER_PARAMS * (t + 78.1 * 17 / 64) / (4 * f)
    got = bf16.step_time(t, pairs, 0, 0) - w4a4.step_time(t, pairs, 0, 0)
    assert got == pytest.approx(layers - layers4, rel=1e-9)


def test_w8a8_fp8_on_h100_and_its_gpu_checks() -> None:
    fp8 = RooflineModel(H100, L8B, precision=Precision("fp8", "fp8"))
    bf16 = RooflineModel(H100, L8B)
    t, pairs = 8_192, 8_192 * 8_193 / 2
    f = 989e12 * 0.763
    # FP8 peak 1,979 TFLOPS is 2.001x BF16's 989; one byte per weight pads half as much.
    layers = 2 * LAYER_PARAMS * (t + 163) / f
    layers8 = 2 * LAYER_PARAMS * (t + 163 / 2) / (1979e12 * 0.763)
    got = bf16.step_time(t, pairs, 0, 0) - fp8.step_time(t, pairs, 0, 0)
    assert got == pytest.approx(layers - layers8, rel=1e-9)
    with pytest.raises(InputError, match="H100-SXM has no INT4 tensor cores"):
        RooflineModel(H100, L8B, precision=Precision("int4", "int4"))
    with pytest.raises(InputError, match="A100-80GB has no FP8 tensor cores"):
        RooflineModel(A100, L8B, precision=Precision("fp8", "fp8"))
    with pytest.raises(InputError, match="takes fp8 or int4 weights"):
        Precision(weight_dtype="bf16", activation_dtype="fp8")
    with pytest.raises(InputError, match="kv_dtype must be one of"):
        Precision(kv_dtype="int8")


def test_tangram_fix_removes_the_reclaim_time_and_the_over_allocation() -> None:
    # paged compression at ratio 0.3: a prefill of T tokens spends f / (1 - f) = 1/3 of the
    # layers' compute-bound per-token time (2 P / F plus the embedding row and elementwise
    # traffic) reclaiming pages, i.e. 25 % of a compute-bound prefill's time.
    f_h = 989e12 * 0.763
    per_token = 2 * LAYER_PARAMS / f_h + 8_192 / BW_H100 + ELEMENTWISE_B / (3.35e12 * 0.556)
    paged = RooflineModel(H100, L8B, precision=Precision(kv_compression=KVCompression(0.3)))
    no_reclaim = RooflineModel(
        H100, L8B, precision=Precision(kv_compression=KVCompression(0.3, reclaim_fraction=0))
    )
    t, pairs = 4_096, 4_096 * 4_097 / 2
    reclaim = paged.step_time(t, pairs, 0, 0) - no_reclaim.step_time(t, pairs, 0, 0)
    assert reclaim == pytest.approx(t * per_token / 3, rel=1e-9)
    assert reclaim / paged.step_time(t, pairs, 0, 0) == pytest.approx(0.25, abs=0.03)
    # Decode attention reads the pages held: 0.828 (paged) vs 0.31935 (tangram) of the KV.
    tangram = RooflineModel(
        H100, L8B, precision=Precision(kv_compression=KVCompression(0.3, "tangram"))
    )
    bf16 = RooflineModel(H100, L8B)
    ctx = 256 * 1_024
    read = ctx * 131_072 / BW_H100
    assert _decode(bf16, 256, ctx) - _decode(paged, 256, ctx) == pytest.approx(
        read * (1 - 0.828), rel=1e-9
    )
    assert _decode(bf16, 256, ctx) - _decode(tangram, 256, ctx) == pytest.approx(
        read * (1 - 0.31935), rel=1e-9
    )
    assert tangram.step_time(t, pairs, 0, 0) == no_reclaim.step_time(t, pairs, 0, 0)


def test_compression_options_are_checked() -> None:
    with pytest.raises(InputError, match="ratio must be in"):
        KVCompression(0.0)
    with pytest.raises(InputError, match=r"unknown kv_compression\.layout 'x'"):
        KVCompression(0.3, "x")
    with pytest.raises(InputError, match="over_allocation must be >= 1"):
        KVCompression(0.3, over_allocation=0.5)
    with pytest.raises(InputError, match=r"reclaim_fraction must be in \[0, 1\)"):
        KVCompression(0.3, reclaim_fraction=1.0)


# --------------------------------------------------------------------------- one formula


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


PRECISIONS = [
    Precision(),
    Precision(kv_dtype="fp8"),
    Precision("int4", "int8", "int4"),
    Precision("int4", "int4", "int4", kv_compression=KVCompression(0.25, "tangram")),
    Precision(kv_compression=KVCompression(0.4)),
    Precision("int4", kv_dequant_overhead=0.3, kv_dtype="int4"),
]


@settings(max_examples=200, deadline=None)
@given(
    q=st.sampled_from(PRECISIONS),
    n=st.integers(min_value=0, max_value=4096),
    ctx=st.lists(st.integers(min_value=0, max_value=2**30), min_size=1, max_size=12),
    d=st.integers(min_value=1, max_value=2**20),
)
def test_one_formula_and_affine_decode_at_every_precision(
    q: Precision, n: int, ctx: list[int], d: int
) -> None:
    m = RooflineModel(A100, L8B, precision=q)
    arr = np.array(ctx, dtype=np.int64)
    for c, t in zip(arr, m.decode_step_times(n, arr), strict=True):
        assert _bits(float(t)) == _bits(m.step_time(0, 0.0, n, int(c)))
    if n:
        c = ctx[0]
        t0, t1, t2 = (m.step_time(0, 0.0, n, c + k * d) for k in (0, 1, 2))
        assert t1 - t0 == pytest.approx(t2 - t1, rel=1e-6, abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(
    p=st.integers(min_value=0, max_value=2**16),
    n=st.integers(min_value=0, max_value=2**12),
    c=st.integers(min_value=0, max_value=2**30),
)
def test_default_precision_is_the_bf16_model_bit_for_bit(p: int, n: int, c: int) -> None:
    plain = RooflineModel(H100, L8B)
    default = RooflineModel(H100, L8B, precision=Precision())
    pairs = p * (c + (p + 1) / 2)
    assert _bits(plain.step_time(p, pairs, n, c)) == _bits(default.step_time(p, pairs, n, c))


# --------------------------------------------------------------------------- scenario

SCENARIO = """\
workload: {synthetic: {num_requests: 10}}
cluster:
  - name: plain
    gpu: H100-SXM
  - name: fp8kv
    gpu: H100-SXM
    precision: {kv_dtype: fp8}
  - name: w4a4
    gpu: A100-80GB
    precision:
      weight_dtype: int4
      activation_dtype: int4
      kv_dtype: int4
      kv_compression: {ratio: 0.3, layout: tangram}
"""


def test_scenario_precision_reaches_capacity_and_step_model() -> None:
    sc = parse_scenario(SCENARIO, "s.yaml")
    assert scenario_problems(sc, workload=False) == []
    plain, fp8kv, w4a4 = build_instances(sc.cluster, sc.policies)
    assert (plain.kv.num_blocks, fp8kv.kv.num_blocks) == (28_341, 56_683)
    assert group_kv_blocks(sc.cluster[2]) == w4a4.kv.num_blocks
    assert fp8kv.step_model.precision.kv_dtype == "fp8"
    assert fp8kv.kv_bytes_per_token == 65_536
    assert w4a4.kv_bytes_per_token == pytest.approx(34_816 * 0.3 * 1.0645)
    assert w4a4.step_model.precision.gemm_dtype == "int4"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "{activation_dtype: int4, weight_dtype: int4}",
            "cluster.0.precision.activation_dtype: H100-SXM has no INT4 tensor cores",
        ),
        ("{kv_dtype: int8}", "cluster.0.precision.kv_dtype: Input should be 'bf16', 'fp8'"),
        (
            "{kv_compression: {ratio: 1.5}}",
            "cluster.0.precision.kv_compression.ratio: Input should be less than or equal to 1",
        ),
        (
            "{activation_dtype: fp8}",
            "cluster.0.precision.activation_dtype: weight_dtype bf16 with activation_dtype fp8",
        ),
    ],
)
def test_bad_precision_names_the_field(section: str, message: str) -> None:
    text = f"workload: {{synthetic: {{num_requests: 1}}}}\ncluster: [{{precision: {section}}}]\n"
    try:
        sc = parse_scenario(text, "s.yaml")
    except InputError as e:
        assert message in str(e)
        return
    problems = scenario_problems(sc, workload=False)
    assert problems and message in ".".join(map(str, problems[0][0])) + ": " + problems[0][1]


def test_list_numerics_and_gpu_peaks(cli) -> None:
    code, out, _ = cli("list", "numerics", "--json")
    data = json.loads(out)
    assert code == 0
    assert [d["dtype"] for d in data["dtypes"]] == ["bf16", "fp8", "int8", "int4"]
    assert {x["layout"]: x["over_allocation"] for x in data["kv_layouts"]} == {
        "paged": 2.76,
        "tangram": 1.0645,
    }
    code, out, _ = cli("list", "gpus", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["H100-SXM"]["fp8_tflops"], rows["H100-SXM"]["int4_tops"]) == (1979, 0)
    assert (rows["A100-80GB"]["int8_tops"], rows["A100-80GB"]["int4_tops"]) == (624, 1248)
    assert (rows["T4"]["int4_tops"], rows["T4"]["mem_bw_tb_s"]) == (260, 0.32)
    assert (rows["T4"]["host_mem_bw_gb_s"], rows["H200"]["host_mem_bw_gb_s"]) == (35.2, 0)
    code, out, _ = cli("list", "numerics", columns=160)
    assert code == 0 and "tangram" in out and "kv_dequant_overhead" in out
    for knob in ("fastswitch", "llm42", "batch_invariant", "no_batching", "host_kv_gib"):
        assert knob in out, knob


def test_linear_time_is_the_perf_check_gemm_of_the_layers() -> None:
    # The layers' GEMMs as `fleetsched perf check` models them: 4 x 32 kernels, the layers'
    # bytes and 2 FLOPs per parameter per token.
    from fleetsched.perf.roofline import gemm_time_s

    m = RooflineModel(H100, L8B)
    for t in (1, 300, 4_096):
        want = gemm_time_s(t, LAYER_PARAMS * 2, 2 * LAYER_PARAMS, 128, H100, m.params)
        assert m.linear_time_s(t) == pytest.approx(float(want), rel=1e-12)
    w4a4 = RooflineModel(A100, L8B, precision=Precision("int4", "int4"))
    # Batch 1 reads the int4 weights: 6,979,588,096 x 17/32 B at A100's BW, plus 128 launches.
    assert w4a4.linear_time_s(1) == pytest.approx(
        LAYER_PARAMS * 17 / 32 / BW_A100 + 128 * 6.40e-6, rel=1e-12
    )
