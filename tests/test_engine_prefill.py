"""Preemptible prefill (FlowPrefill-style) against hand-derived timings."""

from __future__ import annotations

import pytest

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.perf import FittedProfile
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

PROF = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.005,
    prefill_token_s=2e-5,
    prefill_pair_s=0.0,
    decode_token_s=1e-4,
    decode_ctx_token_s=0.0,
)


def run(reqs, preemptible: bool, ff: bool = True):
    # An 8192-token budget, so the 8000-token prompt is one step.
    cfg = EngineConfig(
        max_num_batched_tokens=8192,
        preemptible_prefill=preemptible,
        prefill_yield_tokens=256,
    )
    inst = Instance(0, 10_000, PROF, cfg, fast_forward=ff)
    return Simulator([inst], make_router("round_robin")).run(reqs, check=True)


def reqs() -> list[Request]:
    return [Request(0, 0.0, 8000, 5, priority=0), Request(1, 0.01, 100, 5, priority=1)]


@pytest.mark.parametrize("ff", [True, False])
def test_urgent_arrival_cuts_a_long_prefill(ff: bool) -> None:
    long, short = run(reqs(), preemptible=True, ff=ff)
    # The 8000-token step would end at 0.165 s. At 0.01 s the long prefill has done
    # (0.01 - 0.005) / 2e-5 = 250 tokens: it stops at the next 256-token boundary (0.01012 s).
    cut = 0.005 + 2e-5 * 256
    # Next step: the urgent request alone (its prefill, 0.007 s) -> first token.
    assert short.first_token_s == pytest.approx(cut + 0.005 + 2e-5 * 100)
    # Then the long one resumes with its other 7744 tokens beside the short one's decode.
    resume = 0.005 + 2e-5 * 7744 + 1e-4
    assert long.first_token_s == pytest.approx(short.first_token_s + resume)
    assert long.generated_tokens == short.generated_tokens == 5


def test_without_preemption_the_urgent_request_waits() -> None:
    long, short = run(reqs(), preemptible=False)
    assert long.first_token_s == pytest.approx(0.005 + 2e-5 * 8000)
    assert short.first_token_s > long.first_token_s


def test_equal_priority_does_not_cut() -> None:
    rs = [Request(0, 0.0, 8000, 5), Request(1, 0.01, 100, 5)]
    a = run(rs, preemptible=True)
    b = run(rs, preemptible=False)
    assert [r.first_token_s for r in a] == [r.first_token_s for r in b]
