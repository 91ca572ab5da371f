"""Simulator invariants under random workloads (hypothesis).

Every run asserts the KV accounting after every event (``check=True``): no block leaked or
freed twice, used blocks within capacity, reference counts equal to holders.
"""

from __future__ import annotations

import math
from dataclasses import astuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import PROF_4MS, LeastKV

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator

PROF = PROF_4MS


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 60))
    reqs = []
    t = 0.0
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.2]))
        p = draw(st.integers(1, 400))
        o = draw(st.integers(1, 120))
        # A family shares content by position; -1: no hashes (own keys only). Output hashes
        # continue the family's chain, as a multi-turn session's next prompt repeats an answer.
        fam = draw(st.integers(-1, 3))
        hs = tuple(fam * 1000 + j for j in range(p // 16)) if fam >= 0 else ()
        out_hs = ()
        if fam >= 0 and draw(st.booleans()):
            out_hs = tuple(fam * 1000 + j for j in range(p // 16, (p + o) // 16))
        prio = draw(st.integers(0, 1))
        reqs.append(Request(i, t, p, o, block_hashes=hs, priority=prio, output_block_hashes=out_hs))
    return reqs


def simulate(reqs, *, ff, router, n, blocks, mode, cap, seqs, pp=False, pd=False):
    cfg = EngineConfig(
        max_num_batched_tokens=128,
        max_num_seqs=seqs,
        preemption_mode=mode,
        long_prefill_token_threshold=cap,
        preemptible_prefill=pp,
        prefill_yield_tokens=16,
    )
    # pd: instance 0 prefills and hands requests over to the others (prefill/decode roles).
    roles = ["prefill"] + ["decode"] * (n - 1) if pd and n > 1 else ["mixed"] * n
    insts = [
        Instance(i, blocks, PROF, cfg, fast_forward=ff, kv_bytes_per_token=4096, role=roles[i])
        for i in range(n)
    ]
    r = LeastKV() if router == "least_kv" else make_router("round_robin")
    times: list[float] = []
    sim = Simulator(insts, r)
    recs = sim.run(reqs, check=True, progress=lambda a, t: times.append(t), progress_every=1)
    return recs, insts, times


CASES = dict(
    router=st.sampled_from(["round_robin", "least_kv"]),
    n=st.integers(1, 3),
    blocks=st.integers(32, 80),
    mode=st.sampled_from(["recompute", "swap"]),
    cap=st.sampled_from([0, 48]),
    seqs=st.sampled_from([4, 64]),
    pp=st.booleans(),
    pd=st.booleans(),
)


def _key(rec) -> tuple:
    return tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in astuple(rec))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=workloads(), **CASES)
def test_fast_forward_equals_step_by_step(reqs, router, n, blocks, mode, cap, seqs, pp, pd) -> None:
    kw = dict(router=router, n=n, blocks=blocks, mode=mode, cap=cap, seqs=seqs, pp=pp, pd=pd)
    a, ia, _ = simulate(reqs, ff=True, **kw)
    b, ib, _ = simulate(reqs, ff=False, **kw)
    assert [_key(r) for r in a] == [_key(r) for r in b]
    assert sum(i.stats.steps for i in ia) == sum(i.stats.steps for i in ib)
    assert sum(i.stats.runs for i in ia) <= sum(i.stats.runs for i in ib)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=workloads(), **CASES)
def test_every_request_finishes_once_with_its_tokens(
    reqs, router, n, blocks, mode, cap, seqs, pp, pd
) -> None:
    recs, insts, times = simulate(
        reqs,
        ff=True,
        router=router,
        n=n,
        blocks=blocks,
        mode=mode,
        cap=cap,
        seqs=seqs,
        pp=pp,
        pd=pd,
    )
    assert [r.id for r in recs] == [r.id for r in reqs]  # exactly once each
    for req, rec in zip(reqs, recs, strict=True):
        if math.isnan(rec.finish_s):  # only a request that can never fit is dropped
            assert -(-(req.prompt_tokens + req.output_tokens) // 16) > blocks
            continue
        assert rec.generated_tokens == req.output_tokens
        assert req.arrival_s <= rec.first_scheduled_s <= rec.first_token_s <= rec.finish_s
    assert times == sorted(times)  # time never goes backwards
    for inst in insts:
        assert inst.kv.used == 0 and not inst.running and not len(inst.waiting)
        assert inst.outstanding == 0


@settings(max_examples=10, deadline=None)
@given(reqs=workloads())
def test_same_input_same_output(reqs) -> None:
    kw = dict(router="least_kv", n=2, blocks=40, mode="recompute", cap=0, seqs=8)
    a, _, _ = simulate(reqs, ff=True, **kw)
    b, _, _ = simulate(reqs, ff=True, **kw)
    assert [_key(r) for r in a] == [_key(r) for r in b]
