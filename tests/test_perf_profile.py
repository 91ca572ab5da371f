"""Fitted step-time profiles: YAML loading with located errors, the linear model, the fit."""

from __future__ import annotations

import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.errors import InputError
from fleetsched.perf import (
    FittedProfile,
    RooflineModel,
    fit_profile,
    get_gpu,
    get_model,
    load_profile,
    parse_profile,
)
from fleetsched.perf.calibration import DATASHEET

PROFILE_YAML = """\
model: Llama-3.1-8B
gpu: H100-SXM
tp: 1
c0_s: 0.006
prefill_token_s: 2.0e-05
prefill_pair_s: 5.0e-10
decode_token_s: 1.0e-05
decode_ctx_token_s: 4.0e-08
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "profile.yaml"
    p.write_text(text)
    return p


def test_load_and_evaluate(tmp_path: Path) -> None:
    prof = load_profile(_write(tmp_path, PROFILE_YAML))
    assert (prof.model, prof.gpu, prof.tp) == ("Llama-3.1-8B", "H100-SXM", 1)
    # 0.006 + 100 * 2e-5 + 1e6 * 5e-10 + 10 * 1e-5 + 5000 * 4e-8
    # = 0.006 + 0.002 + 0.0005 + 0.0001 + 0.0002 = 0.0088
    assert prof.step_time(100, 1e6, 10, 5000) == pytest.approx(0.0088, rel=1e-12)
    assert prof.step_time(0, 0.0, 0, 0) == 0.0
    assert prof.decode_step_times(0, np.array([3, 4])).tolist() == [0.0, 0.0]


def test_to_yaml_round_trip() -> None:
    prof = parse_profile(PROFILE_YAML)
    assert parse_profile(prof.to_yaml()) == prof
    noted = prof.model_copy(update={"notes": "from 2k steps"})
    assert parse_profile(noted.to_yaml()) == noted


def test_negative_coefficient_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, PROFILE_YAML.replace("prefill_pair_s: 5.0e-10", "prefill_pair_s: -1"))
    with pytest.raises(InputError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert f"{path}:6" in msg
    assert "prefill_pair_s" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PROFILE_YAML.replace("decode_token_s: 1.0e-05\n", ""), "decode_token_s"),
        (PROFILE_YAML + "bogus: 1\n", "bogus"),
        (PROFILE_YAML.replace("tp: 1", "tp: 0"), "tp"),
        (PROFILE_YAML.replace("c0_s: 0.006", "c0_s: .nan"), "c0_s"),
        (PROFILE_YAML.replace("c0_s: 0.006", "c0_s: fast"), "c0_s"),
        ("- just\n- a list\n", "mapping"),
        ("model: [unclosed\n", "invalid YAML"),
    ],
)
def test_invalid_profiles(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_profile(path)
    assert expected in str(exc.value)
    assert str(path) in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read step-time profile"):
        load_profile(tmp_path / "nope.yaml")


@settings(max_examples=200, deadline=None)
@given(
    coefs=st.lists(
        st.floats(min_value=0, max_value=1.0, allow_nan=False, allow_infinity=False),
        min_size=5,
        max_size=5,
    ),
    n=st.integers(min_value=0, max_value=4096),
    ctx=st.lists(st.integers(min_value=0, max_value=2**62), max_size=20),
)
def test_decode_step_times_bitwise_equal_step_time(
    coefs: list[float], n: int, ctx: list[int]
) -> None:
    prof = FittedProfile(
        model="m",
        gpu="g",
        c0_s=coefs[0],
        prefill_token_s=coefs[1],
        prefill_pair_s=coefs[2],
        decode_token_s=coefs[3],
        decode_ctx_token_s=coefs[4],
    )
    arr = np.array(ctx, dtype=np.int64)
    out = prof.decode_step_times(n, arr)
    assert out.dtype == np.float64 and out.shape == arr.shape
    for c, t in zip(arr, out, strict=True):
        expected = prof.step_time(0, 0.0, n, int(c))
        assert struct.pack("<d", float(t)) == struct.pack("<d", expected)


# ---- fitting ---------------------------------------------------------------------------------

H100 = get_gpu("H100-SXM")
L8B = get_model("Llama-3.1-8B")


#: A datasheet roofline (no GEMM padding or kernel latencies) with a 1.5 ms step overhead: in
#: each regime below every term is linear, so a fit must recover it exactly.
KNOBS = {**asdict(DATASHEET), "overhead_s": 1.5e-3}
#: Per token: its embedding row (8,192 B) and elementwise traffic (32 layers x 163,840 B).
PER_TOKEN_S = (8_192 + 32 * 163_840) / 3.35e12
#: Llama-3.1-8B's transformer layers: 8,030,261,248 - 2 x 128,256 x 4,096 parameters.
LAYER_PARAMS = 6_979_588_096
#: LM head weights: 128,256 x 4,096 x 2 B = 1,050,673,152 B / 3.35e12 = 0.3136 ms.
HEAD_S = 1_050_673_152 / 3.35e12


def _roofline_samples(
    rng: np.random.Generator, n_rows: int, min_tokens: int, max_tokens: int, max_decodes: int
) -> np.ndarray:
    m = RooflineModel(H100, L8B, **KNOBS)
    rows = []
    while len(rows) < n_rows:
        p = int(rng.integers(0, max_tokens + 1))
        d = int(rng.integers(0, min(max_decodes, max_tokens - p) + 1))
        if not min_tokens <= p + d <= max_tokens:
            continue
        pairs = float(rng.integers(0, 1 + p * 4096))
        ctx = int(rng.integers(0, 1 + d * 8192))
        rows.append((p, pairs, d, ctx, m.step_time(p, pairs, d, ctx)))
    return np.array(rows, dtype=float)


def test_fit_recovers_roofline_in_compute_bound_regime() -> None:
    # With >= 400 tokens per step, the layers of 8B on H100 are compute-bound
    # (2 x 6,979,588,096 x 400 / 989e12 = 5.65 ms > 13,959,176,192 B / 3.35e12 = 4.17 ms); with
    # <= 250 decodes the LM head stays weight-bound (its FLOPs for 251 positions,
    # 2 x 525,336,576 x 251 / 989e12 = 0.27 ms, are under its 0.31 ms read); decode attention
    # is always KV-bandwidth-bound. So the roofline is exactly linear:
    #   c0_s               = overhead + LM head read            = 1.5e-3 + 0.3136e-3
    #   prefill_token_s    = decode_token_s = 2 x 6,979,588,096 / 989e12 + 1.567 us
    #   prefill_pair_s     = 4 x 32 x 32 x 128 / 989e12          = 5.3012e-10
    #   decode_ctx_token_s = 131,072 / 3.35e12                   = 3.9126e-08
    samples = _roofline_samples(np.random.default_rng(0), 300, 400, 8192, 250)
    prof = fit_profile(samples, model="Llama-3.1-8B", gpu="H100-SXM", tp=1)
    per_token = 2 * LAYER_PARAMS / 989e12 + PER_TOKEN_S
    assert prof.c0_s == pytest.approx(1.5e-3 + HEAD_S, rel=1e-6)
    assert prof.prefill_token_s == pytest.approx(per_token, rel=1e-6)
    assert prof.decode_token_s == pytest.approx(per_token, rel=1e-6)
    assert prof.prefill_pair_s == pytest.approx(4 * 32 * 32 * 128 / 989e12, rel=1e-6)
    assert prof.decode_ctx_token_s == pytest.approx(131_072 / 3.35e12, rel=1e-6)
    assert (prof.model, prof.gpu, prof.tp) == ("Llama-3.1-8B", "H100-SXM", 1)
    # and the fitted profile reproduces the samples
    for p, pairs, d, ctx, t in samples[:20]:
        assert prof.step_time(int(p), pairs, int(d), int(ctx)) == pytest.approx(t, rel=1e-6)


def test_fit_recovers_roofline_in_memory_bound_regime() -> None:
    # With <= 250 tokens the layers and the LM head are weight-read-bound: a constant
    # (13,959,176,192 + 1,050,673,152) B / 3.35e12 = 4.481 ms, so c0_s = 1.5e-3 + 4.481e-3, and
    # each token costs only its embedding row and elementwise traffic, 1.567 us.
    samples = _roofline_samples(np.random.default_rng(1), 200, 1, 250, 250)
    prof = fit_profile(samples)
    assert prof.c0_s == pytest.approx(1.5e-3 + 13_959_176_192 / 3.35e12 + HEAD_S, rel=1e-6)
    assert prof.prefill_token_s == pytest.approx(PER_TOKEN_S, rel=1e-6)
    assert prof.decode_token_s == pytest.approx(PER_TOKEN_S, rel=1e-6)
    assert prof.prefill_pair_s == pytest.approx(4 * 32 * 32 * 128 / 989e12, rel=1e-6)
    assert prof.decode_ctx_token_s == pytest.approx(131_072 / 3.35e12, rel=1e-6)


def test_fit_clamps_negative_coefficients_to_zero() -> None:
    # Time falls with prefill tokens in this (unphysical) data: that coefficient is fixed at 0.
    rows = [(p, 0.0, 1, 0, 0.01 - 1e-6 * p) for p in range(0, 100, 5)]
    prof = fit_profile(rows)
    assert prof.prefill_token_s == 0.0
    assert min(prof.c0_s, prof.prefill_pair_s, prof.decode_token_s) >= 0.0


def test_fit_skips_empty_steps_and_unvaried_columns() -> None:
    # decode-only samples: no prefill column varies, so those coefficients come out 0.
    rows = [(0, 0.0, d, 1000 * d, 0.005 + 1e-5 * d + 4e-8 * 1000 * d) for d in range(1, 50)]
    rows.append((0, 0.0, 0, 0, 123.0))  # an empty step: ignored
    prof = fit_profile(rows)
    assert prof.prefill_token_s == 0.0 and prof.prefill_pair_s == 0.0
    assert prof.c0_s == pytest.approx(0.005, rel=1e-6)
    # decode_token_s and decode_ctx_token_s are collinear here (ctx = 1000 * d); their combined
    # per-decode cost is what the data determines.
    assert prof.decode_token_s + 1000 * prof.decode_ctx_token_s == pytest.approx(5e-5, rel=1e-6)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([(1, 2, 3)], "shape"),
        ([(1, 0, 0, 0, float("nan"))], "NaN"),
        ([(1, 0, 0, -5, 0.1)], "negative"),
        ([(0, 0, 0, 0, 0.1)], "no non-empty steps"),
    ],
)
def test_fit_rejects_bad_samples(samples: list[tuple[float, ...]], expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        fit_profile(samples)
