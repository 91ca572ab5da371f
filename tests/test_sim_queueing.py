"""Queueing-theory checks of the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.perf import FittedProfile
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

# No context term: every request of the same shape takes the same service time.
PROF = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.01,
    prefill_token_s=1e-5,
    prefill_pair_s=0.0,
    decode_token_s=0.0,
    decode_ctx_token_s=0.0,
)


def poisson(n: int, rate: float, seed: int, p: int = 100, o: int = 10) -> list[Request]:
    gaps = np.random.default_rng(seed).exponential(1 / rate, n)
    return [Request(i, float(t), p, o) for i, t in enumerate(np.cumsum(gaps))]


def test_md1_waiting_time_matches_pollaczek_khinchine() -> None:
    # One request at a time (max_num_seqs=1): an M/D/1 queue with service time
    # S = prefill (0.01 + 100e-5) + 9 decode steps of 0.01 = 0.101 s.
    s = 0.011 + 9 * 0.01
    rate = 0.6 / s
    inst = Instance(0, 1000, PROF, EngineConfig(max_num_seqs=1))
    recs = Simulator([inst], make_router("round_robin")).run(poisson(20_000, rate, seed=3))
    e2e = np.array([r.e2e_s for r in recs])
    assert np.allclose(e2e.min(), s)
    wq = float(np.mean([r.queue_s for r in recs]))
    rho = rate * s
    assert wq == pytest.approx(rho * s / (2 * (1 - rho)), rel=0.08)


def test_littles_law_from_engine_occupancy() -> None:
    # Sample the engines' own count of outstanding requests at each Poisson arrival (PASTA:
    # arrivals see time averages) and compare with lambda * W from the per-request records.
    insts = [Instance(i, 400, PROF, EngineConfig(max_num_seqs=16)) for i in range(2)]
    sim = Simulator(insts, make_router("round_robin"))
    samples: list[int] = []
    reqs = poisson(20_000, rate=40.0, seed=5, p=200, o=40)
    recs = sim.run(
        reqs,
        progress=lambda a, t: samples.append(sum(i.outstanding for i in insts)),
        progress_every=1,
    )
    duration = reqs[-1].arrival_s
    lam = len(reqs) / duration
    w = float(np.mean([r.e2e_s for r in recs]))
    occupancy = float(np.mean(samples[:-1])) - 1  # the sample includes the arrival itself
    assert occupancy == pytest.approx(lam * w, rel=0.05)
