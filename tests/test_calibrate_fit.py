"""The calibration fit recovers a known profile from measurements that profile generated.

The "server" is the engine model itself run with a known profile; the fit sees only the
client-side timings (token arrival times) and must find every coefficient again, which needs
it to know how many steps, ubatches and checkpoints each measured interval spans.
"""

from __future__ import annotations

import pytest

from fleetsched.calibrate.fit import fit_llamacpp, replay, requests_of
from fleetsched.calibrate.plan import Measured, llamacpp_plan, probe_tokens
from fleetsched.core.config import LlamaCppConfig
from fleetsched.errors import FleetschedError
from fleetsched.perf import get_model
from fleetsched.perf.ubatch import LINEAR_COEFFICIENTS, LlamaCppProfile

GEMMA = get_model("gemma-3-270m")
TRUE = LlamaCppProfile(
    model="gemma-3-270m",
    device="EPYC-Milan-2vCPU",
    threads=2,
    ubatch_s=0.004,
    token_s=0.0034,
    output_s=0.012,
    pair_s=2.0e-7,
    kv_read_s=4.0e-6,
    checkpoint_s=0.03,
    request_s=0.02,
    small_ubatch_s=[0.005, 0.009, 0.022, 0.004],
    copy_byte_s=2e-10,
)
ENGINE = LlamaCppConfig(kind="llamacpp", parallel=4, ctx=8192, threads=2)


def synthetic_runs(engine: LlamaCppConfig, repeats: int = 2) -> list[Measured]:
    """The plan, timed by the engine model (each experiment after the previous one)."""
    runs: list[Measured] = []
    k = 0
    for seed in range(repeats):
        for exp in llamacpp_plan(engine.parallel, engine.ctx // engine.parallel, seed=seed):
            for p in exp.probes:
                runs.append(Measured(p, exp.name, k, 200.0 * k + p.offset_s, [], 200))
            k += 1
    rp = replay(runs, TRUE, engine, GEMMA)
    for i, m in enumerate(runs):
        m.send_s = rp.arrival[i]  # the replay runs each experiment after the previous one
        m.token_s = rp.tokens[i]
        m.cache_n = rp.cached[i]
    return runs


def test_fit_recovers_the_profile_that_timed_the_measurements() -> None:
    runs = synthetic_runs(ENGINE)
    fit = fit_llamacpp(runs, ENGINE, GEMMA, device=TRUE.device, copy_byte_s=TRUE.copy_byte_s)
    got, want = fit.profile, TRUE
    for name in (*LINEAR_COEFFICIENTS, "request_s"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-6, abs=1e-12), name
    assert got.small_ubatch_s == pytest.approx(want.small_ubatch_s, rel=1e-6)
    assert max(abs(r.error) for r in fit.rows if r.fitted) < 1e-6
    assert fit.cache_mismatches == [] and fit.cache_checked == len(runs)


def test_requests_replay_the_probe_prompts_exactly() -> None:
    runs = synthetic_runs(ENGINE, repeats=1)
    for r in requests_of(runs, list(range(len(runs))), 0.0):
        assert r.prompt_tokens == len(probe_tokens(runs[r.id].probe))
        assert r.extra["id_slot"] == runs[r.id].probe.id_slot


def test_swa_full_server_fit() -> None:
    engine = ENGINE.model_copy(update={"swa_full": True})
    runs = synthetic_runs(engine, repeats=1)
    fit = fit_llamacpp(runs, engine, GEMMA, device=TRUE.device, copy_byte_s=TRUE.copy_byte_s)
    # No checkpoints at all with --swa-full: that coefficient is not identifiable (and 0).
    assert fit.profile.checkpoint_s == 0.0
    assert fit.profile.token_s == pytest.approx(TRUE.token_s, rel=1e-6)
    assert max(abs(r.error) for r in fit.rows if r.fitted) < 1e-6


def test_a_coefficient_held_at_zero_is_left_out_and_the_rest_absorb_it() -> None:
    runs = synthetic_runs(ENGINE, repeats=1)
    kw = {"device": TRUE.device, "copy_byte_s": TRUE.copy_byte_s}
    fit = fit_llamacpp(runs, ENGINE, GEMMA, held_at_zero=("kv_read_s",), **kw)
    assert fit.profile.kv_read_s == 0.0
    # Without the term that timed the decodes' context, the fit can no longer be exact.
    assert max(abs(r.error) for r in fit.rows if r.fitted) > 1e-3
    with pytest.raises(FleetschedError, match=r"not a linear coefficient: \['c0_s'\]"):
        fit_llamacpp(runs, ENGINE, GEMMA, held_at_zero=("c0_s",), **kw)
