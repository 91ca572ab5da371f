"""``decode_line``: the closed form of a decode-only step the engine plans runs with must be
bitwise what ``step_time`` returns, for every step model that offers it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.perf import FittedProfile, RooflineModel, get_gpu, get_model

positive = st.floats(min_value=0.0, max_value=1e-2, allow_nan=False, allow_subnormal=False)


@settings(max_examples=200, deadline=None)
@given(
    gpu=st.sampled_from(["H100-SXM", "A100-80GB", "A10G", "MI300X"]),
    model=st.sampled_from(["Llama-3.1-8B", "Llama-3.1-70B", "Mixtral-8x7B"]),
    tp=st.sampled_from([1, 2, 4, 8]),
    n=st.integers(1, 1024),
    ctx=st.integers(0, 1 << 40),
)
def test_roofline_decode_line_is_step_time(gpu: str, model: str, tp: int, n: int, ctx: int) -> None:
    m = RooflineModel(get_gpu(gpu), get_model(model), tp)
    a, b = m.decode_line(n)
    assert a + ctx * b == m.step_time(0, 0.0, n, ctx)


@settings(max_examples=200, deadline=None)
@given(
    coefs=st.lists(positive, min_size=5, max_size=5),
    n=st.integers(1, 1024),
    ctx=st.integers(0, 1 << 40),
)
def test_profile_decode_line_is_step_time(coefs: list[float], n: int, ctx: int) -> None:
    prof = FittedProfile(
        model="m",
        gpu="g",
        c0_s=coefs[0],
        prefill_token_s=coefs[1],
        prefill_pair_s=coefs[2],
        decode_token_s=coefs[3],
        decode_ctx_token_s=coefs[4],
    )
    a, b = prof.decode_line(n)
    assert a + ctx * b == prof.step_time(0, 0.0, n, ctx)
