"""Admission policies: conservative (never preempts) and Past-Future (peak KV prediction)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.test_engine_policies_helpers import all_done, run

from fleetsched.core.request import Request
from fleetsched.policies.engine import (
    AggressiveAdmission,
    ConservativeAdmission,
    PastFutureAdmission,
)
from fleetsched.policies.engine._history import LengthHistory
from fleetsched.policies.engine.past_future import peak_blocks


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 40))
    reqs, t = [], 0.0
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 0.01, 0.05]))
        p = draw(st.integers(1, 300))
        o = draw(st.integers(1, 150))
        fam = draw(st.integers(0, 2))
        hs = tuple(fam * 1000 + j for j in range(p // 16))
        reqs.append(Request(i, t, p, o, block_hashes=hs, priority=draw(st.integers(0, 2))))
    return reqs


# ---------------------------------------------------------------- conservative


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reqs=workloads(),
    blocks=st.integers(12, 60),
    seqs=st.sampled_from([1, 3, 8, 64]),
    cap=st.sampled_from([0, 32]),
    caching=st.booleans(),
)
def test_conservative_never_preempts(reqs, blocks, seqs, cap, caching) -> None:
    recs, inst = run(
        reqs,
        blocks=blocks,
        admission=ConservativeAdmission(),
        max_num_batched_tokens=128,
        max_num_seqs=seqs,
        long_prefill_token_threshold=cap,
        enable_prefix_caching=caching,
    )
    assert inst.stats.preemptions == 0
    for r in recs:  # every request completes, except those that can never fit
        if r.finished:
            assert r.generated_tokens == r.output_tokens
        else:
            assert math.ceil((r.prompt_tokens + r.output_tokens) / 16) > blocks


def test_aggressive_preempts_a_burst_conservative_queues_it() -> None:
    # 14 blocks; each request ends at 40 + 60 = 100 tokens = 7 blocks. Aggressive starts all
    # three (3 blocks each) and must preempt as they grow; conservative reserves 7 blocks
    # each, so it runs two and queues the third until one of them finishes.
    reqs = [Request(i, 0.0, 40, 60) for i in range(3)]
    kw = dict(blocks=14, max_num_seqs=8, max_num_batched_tokens=256)
    recs_a, inst_a = run(reqs, admission=AggressiveAdmission(), **kw)
    recs_c, inst_c = run(reqs, admission=ConservativeAdmission(), **kw)
    assert inst_a.stats.preemptions >= 1
    assert inst_c.stats.preemptions == 0
    assert all_done(recs_a) and all_done(recs_c)
    assert recs_c[0].first_scheduled_s == recs_c[1].first_scheduled_s == 0.0
    assert recs_c[2].first_scheduled_s == min(recs_c[0].finish_s, recs_c[1].finish_s)


def test_conservative_max_output_tokens_reserves_more() -> None:
    # Reserving 1000 output tokens (63 blocks) for each: only one request at a time fits in
    # 70 blocks; an idle engine still starts a request whose reservation exceeds the pool.
    reqs = [Request(i, 0.0, 40, 60) for i in range(3)]
    for cap, serial in ((1000, True), (2000, True), (None, False)):
        recs, inst = run(reqs, blocks=70, admission=ConservativeAdmission(max_output_tokens=cap))
        assert all_done(recs) and inst.stats.preemptions == 0
        starts = sorted(r.first_scheduled_s for r in recs)
        assert (starts[1] > 0) == serial


# ---------------------------------------------------------------- past-future: peak formula


def test_peak_blocks_three_requests_by_hand() -> None:
    # current tokens c = (10, 20, 5), predicted remaining r = (30, 5, 12). In decreasing r:
    # A(c=10, r=30), C(c=5, r=12), B(c=20, r=5). Right before the j-th longest finishes:
    #   j=1, t=30: A alone:            ceil(40/16) = 3 blocks           (40 tokens)
    #   j=2, t=12: A and C:            ceil(22/16) + ceil(17/16) = 4    (39 tokens)
    #   j=3, t=5:  A, C and B:         ceil(15/16) + ceil(10/16) + ceil(25/16) = 4  (50 tokens)
    c, r = np.array([10, 20, 5]), np.array([30, 5, 12])
    assert peak_blocks(c, r, 16) == 4
    # With 1-token blocks this is LightLLM's max_j(cumsum(c)_j + r_j * j): max(40, 39, 50).
    assert peak_blocks(c, r, 1) == 50
    assert peak_blocks(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 16) == 0


@given(
    items=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 300)), min_size=1, max_size=12),
    bt=st.sampled_from([1, 2, 16]),
)
def test_peak_blocks_equals_brute_force(items, bt) -> None:
    c = np.array([x for x, _ in items])
    r = np.array([y for _, y in items])
    # At t steps from now, requests with remaining >= t are still there, t tokens longer.
    brute = max(
        sum(math.ceil((ci + t) / bt) for ci, ri in items if ri >= t) for t in range(max(r) + 1)
    )
    assert peak_blocks(c, r, bt) == brute


# ---------------------------------------------------------------- past-future: predictions


def test_past_future_predicts_conditional_quantile() -> None:
    pf = PastFutureAdmission(quantile=0.9, prior_output_tokens=64)
    assert pf.predict_total(0) == 64  # no past yet: the prior
    for n in range(10, 101, 10):
        pf.past.add(n)  # past outputs 10, 20, ..., 100
    assert pf.predict_total(0) == 90  # all 10: nearest rank ceil(0.9 * 10) = 9th
    assert pf.predict_total(55) == 100  # {60..100}: ceil(0.9 * 5) = 5th of 5
    assert pf.predict_total(20) == 100  # {30..100}: ceil(0.9 * 8) = 8th of 8
    assert pf.predict_total(19) == 100  # same set as 20
    assert pf.predict_total(100) == 101  # outlived the whole past: max(prior, g + 1)
    median = PastFutureAdmission(quantile=0.5)
    median.past = pf.past
    assert median.predict_total(0) == 50 and median.predict_total(50) == 80  # 3rd of 60..100
    got = pf.predict_totals(np.array([0, 20, 55, 100, 10]))
    assert got.tolist() == [pf.predict_total(g) for g in (0, 20, 55, 100, 10)]


@given(
    past=st.lists(st.integers(1, 50), max_size=30),
    gen=st.lists(st.integers(0, 60), min_size=1, max_size=10),
    q=st.sampled_from([0.5, 0.9, 0.99, 1.0]),
)
def test_past_future_vector_prediction_matches_scalar(past, gen, q) -> None:
    pf = PastFutureAdmission(quantile=q, prior_output_tokens=7)
    for x in past:
        pf.on_finish(_Finished(x), 1.0)
    assert pf.predict_totals(np.array(gen)).tolist() == [pf.predict_total(g) for g in gen]


class _Finished:
    def __init__(self, generated: int) -> None:
        self.generated = generated


def test_length_history_window_slides() -> None:
    h = LengthHistory(window=3)
    for x in (5, 1, 9, 7):
        h.add(x)
    assert h.values == [1, 7, 9]  # 5 fell out
    assert h.quantile(0.5) == 7 and h.quantile(1.0, above=7) == 9 and h.quantile(0.5, 9) is None


# ---------------------------------------------------------------- past-future in the engine


class _Recorder:
    """Wraps an admission policy: records the batch size it admits into (and checks peaks)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.monotone = inner.monotone
        self.max_batch = 0

    def bind(self, engine) -> None:
        if hasattr(self.inner, "bind"):
            self.inner.bind(engine)

    def on_finish(self, seq, now) -> None:
        if hasattr(self.inner, "on_finish"):
            self.inner.on_finish(seq, now)

    def admit(self, seq, need, engine) -> bool:
        ok = self.inner.admit(seq, need, engine)
        if ok:
            self.max_batch = max(self.max_batch, len(engine.running) + 1)
            if isinstance(self.inner, PastFutureAdmission) and engine.running:
                assert self.inner.last_peak <= engine.kv.num_blocks
        return ok


def long_output_workload() -> list[Request]:
    # Four lone requests teach the engine that outputs are 300 tokens long, then a burst of
    # twelve: each ends at 64 + 300 = 364 tokens = 23 blocks, so 80 blocks hold three at once.
    warm = [Request(i, 10.0 * i, 32, 300) for i in range(4)]
    burst = [Request(4 + i, 50.0, 64, 300) for i in range(12)]
    return warm + burst


def test_past_future_admits_fewer_than_aggressive_when_outputs_are_long() -> None:
    reqs = long_output_workload()
    agg, pf = _Recorder(AggressiveAdmission()), _Recorder(PastFutureAdmission(quantile=0.9))
    recs_a, inst_a = run(reqs, blocks=80, admission=agg)
    recs_p, inst_p = run(reqs, blocks=80, admission=pf)
    assert all_done(recs_a) and all_done(recs_p)
    assert agg.max_batch >= 12  # 12 x 4 blocks of prompt fit: aggressive starts them all
    # At the burst, 3 x 23 <= 80 < 4 x 23: three start. A fourth (its own end at 23 blocks)
    # fits once the three are k tokens in with 3 * 23 + ceil((64 + 300 - k) / 16) <= 80,
    # i.e. k >= 188, still before they finish.
    assert sum(r.first_scheduled_s == 50.0 for r in recs_p) == 3
    assert pf.max_batch == 4
    assert inst_a.stats.preemptions > 0
    assert inst_p.stats.preemptions == 0  # the past predicted the future exactly


def test_past_future_cold_start_uses_prior() -> None:
    # Without a past, the prior (1024 output tokens) is assumed: 64 + 1024 tokens = 68
    # blocks per request, so with 200 blocks only two run together at first.
    # Once they finish, the past says 50 tokens and the other four start together.
    reqs = [Request(i, 0.0, 64, 50) for i in range(6)]
    recs, inst = run(reqs, blocks=200, admission=PastFutureAdmission(prior_output_tokens=1024))
    assert all_done(recs) and inst.stats.preemptions == 0
    assert recs[0].first_scheduled_s == recs[1].first_scheduled_s == 0.0
    later = {r.first_scheduled_s for r in recs[2:]}
    assert later == {max(recs[0].finish_s, recs[1].finish_s)}
