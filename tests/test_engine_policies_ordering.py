"""Waiting-queue orders: priority (aging), sjf (predictors), edf (least slack), vtc, wfq."""

from __future__ import annotations

import math

import pytest
from tests.test_engine_policies_helpers import all_done, run, seq, start_order

from fleetsched.core.config import SLOClass
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.policies.engine import (
    ORDERING,
    EDFQueue,
    FCFSQueue,
    PriorityQueue,
    SJFQueue,
    VTCQueue,
    WFQQueue,
    make,
)

ONE = dict(max_num_seqs=1)  # one request at a time: the queue order is the service order


def blocker(output: int = 100) -> Request:
    """Request 0: occupies the only seat from t=0 while the others queue behind it."""
    return Request(0, 0.0, 100, output)


# ---------------------------------------------------------------- priority


def test_priority_serves_higher_priority_first() -> None:
    reqs = [blocker()] + [
        Request(i, 0.001, 100, 10, priority=p) for i, p in [(1, 0), (2, 5), (3, 2)]
    ]
    recs, _ = run(reqs, ordering=PriorityQueue(), **ONE)
    assert start_order(recs) == [0, 2, 3, 1]  # larger priority = more important
    recs, _ = run(reqs, **ONE)
    assert start_order(recs) == [0, 1, 2, 3]  # fcfs


@pytest.mark.parametrize(("t_high", "first"), [(1.9, 2), (2.1, 1)])
def test_priority_aging_serves_old_low_priority_request_first(t_high, first) -> None:
    # Aging 0.5 priority levels per second: low (priority 0, arrived 0.01 s) overtakes high
    # (priority 1, arrived t_high) once 0.5 * (t_high - 0.01) > 1, i.e. for t_high > 2.01 s.
    # The blocker holds the only seat ~6 s, so both are waiting when it finishes.
    low = Request(1, 0.01, 100, 10, priority=0)
    high = Request(2, t_high, 100, 10, priority=1)
    q = PriorityQueue(aging_per_s=0.5)
    recs, _ = run([blocker(1200), low, high], ordering=q, **ONE)
    assert start_order(recs) == [0, first, 3 - first]
    t = recs[0].finish_s  # the choice was made then: check the effective priorities
    assert t > 5.0
    eff_low, eff_high = q.effective_priority(seq(low), t), q.effective_priority(seq(high), t)
    assert eff_low == pytest.approx(0.5 * (t - 0.01))
    assert eff_high == pytest.approx(1 + 0.5 * (t - t_high))
    assert (eff_low > eff_high) == (first == 1)
    # Without aging, high priority always wins.
    recs, _ = run([blocker(1200), low, high], ordering=PriorityQueue(), **ONE)
    assert start_order(recs) == [0, 2, 1]


def test_priority_queue_pops_in_key_order_with_fcfs_ties() -> None:
    q = PriorityQueue()
    s = [seq(Request(i, 0.1 * i, 10, 10, priority=p)) for i, p in enumerate([1, 3, 1, 3, 2])]
    for x in s:
        q.push(x)
    q.push_front(seq(Request(9, 5.0, 10, 10, priority=3)))  # a preempted one keeps its key
    got = [q.pop(0.0).req.id for _ in range(len(q))]
    assert got == [1, 3, 9, 4, 0, 2]


# ---------------------------------------------------------------- sjf


def test_sjf_oracle_orders_by_output_length() -> None:
    reqs = [blocker()] + [Request(i, 0.001, 100, o) for i, o in [(1, 50), (2, 10), (3, 30)]]
    recs, _ = run(reqs, ordering=SJFQueue(predictor="oracle"), **ONE)
    assert start_order(recs) == [0, 2, 3, 1]
    assert all_done(recs)


def test_sjf_running_mean_predictor_updates_on_finishes() -> None:
    q = SJFQueue(predictor="mean", prior_output_tokens=99)
    r = Request(9, 0.0, 10, 5)
    assert q.predictor.predict(r) == 99  # nothing finished yet: the prior
    reqs = [Request(i, i * 1.0, 100, o) for i, o in enumerate([10, 20, 60])]
    recs, _ = run(reqs, ordering=q)
    assert all_done(recs)
    assert q.predictor.predict(r) == pytest.approx(30.0)  # (10 + 20 + 60) / 3
    assert q.job_size(seq(r)) == pytest.approx(30.0)


def test_sjf_quantile_predictor() -> None:
    for qq, want in ((0.5, 20), (0.9, 60), (1.0, 60)):
        q = SJFQueue(predictor="quantile", q=qq)
        run([Request(i, i * 1.0, 100, o) for i, o in enumerate([10, 20, 60])], ordering=q)
        assert q.predictor.predict(Request(9, 0.0, 10, 5)) == want


def test_sjf_tenant_predictor_learns_per_tenant_lengths() -> None:
    # Tenant "short" finished 10-token answers, "long" 200-token ones. Then, behind a
    # blocker, a "long" request arrives before a "short" one: the tenant history puts the
    # short tenant first; the running mean (the same for everybody) keeps FCFS order.
    history = [Request(0, 0.0, 50, 10, tenant="short"), Request(1, 1.0, 50, 200, tenant="long")]
    later = [
        Request(2, 5.0, 100, 300),  # blocker
        Request(3, 5.001, 100, 10, tenant="long"),
        Request(4, 5.002, 100, 10, tenant="short"),
    ]
    q = SJFQueue(predictor="tenant")
    recs, _ = run(history + later, ordering=q, **ONE)
    assert start_order(recs)[2:] == [2, 4, 3]
    assert q.predictor.predict(Request(9, 0, 1, 1, tenant="long")) == (200 + 10) / 2
    assert q.predictor.predict(Request(9, 0, 1, 1, tenant="new")) == pytest.approx(
        (10 + 200 + 300 + 10 + 10) / 5  # unknown tenant: global mean
    )
    recs, _ = run(history + later, ordering=SJFQueue(predictor="mean"), **ONE)
    assert start_order(recs)[2:] == [2, 3, 4]


def test_sjf_preempted_request_counts_only_what_is_left() -> None:
    q = SJFQueue()
    a, b = seq(Request(1, 0.0, 10, 100)), seq(Request(2, 0.0, 10, 50))
    a.generated = 70  # preempted after 70 of 100 tokens: 30 left
    q.push(b)
    q.push_front(a)
    assert q.job_size(a) == 30 and q.pop(0.0) is a and q.pop(0.0) is b


def test_sjf_rejects_unknown_predictor() -> None:
    with pytest.raises(InputError, match="predictor"):
        SJFQueue(predictor="crystal_ball")


# ---------------------------------------------------------------- edf / least slack


def test_edf_meets_deadlines_fcfs_misses() -> None:
    # One seat. A (long answer, lax deadline) arrived first; B and C have tight first-token
    # deadlines. FCFS runs A for ~2 s and both miss. The hand schedule B, C, A meets all:
    # B's first token at ~7 ms, B done at ~0.1 s, C's first token ~0.11 s, A's at ~0.22 s.
    reqs = [
        Request(0, 0.0, 100, 400, deadline_s=10.0),
        Request(1, 0.0, 100, 20, deadline_s=1.2),
        Request(2, 0.0, 100, 20, deadline_s=1.5),
    ]
    recs, _ = run(reqs, ordering=EDFQueue(), **ONE)
    assert start_order(recs) == [1, 2, 0]
    assert all(r.first_token_s <= r.deadline_s for r in recs)
    recs, _ = run(reqs, **ONE)
    assert [r.first_token_s <= r.deadline_s for r in recs] == [True, False, False]


def test_edf_uses_slo_class_ttft_when_no_deadline() -> None:
    slo = {
        "default": SLOClass(ttft_s=2.0),
        "chat": SLOClass(ttft_s=0.8),
        "batch": SLOClass(ttft_s=30),
    }
    reqs = [
        blocker(),
        Request(1, 0.001, 100, 10, slo_class="batch"),
        Request(2, 0.002, 100, 10),  # default: due at 2.002
        Request(3, 0.003, 100, 10, slo_class="chat"),  # due at 0.803
    ]
    recs, _ = run(reqs, ordering=EDFQueue(slo_classes=slo), **ONE)
    assert start_order(recs) == [0, 3, 2, 1]


def test_edf_puts_requests_that_cannot_make_it_behind_feasible_ones() -> None:
    # The blocker holds the seat until ~1.0 s. By then X (due 0.5) and Z (due 0.6) have
    # negative slack: Y (due 3.0) goes first, then X and Z by deadline.
    reqs = [
        blocker(200),
        Request(1, 0.001, 100, 10, deadline_s=0.5),  # X
        Request(2, 0.002, 100, 10, deadline_s=3.0),  # Y
        Request(3, 0.003, 100, 10, deadline_s=0.6),  # Z
    ]
    recs, _ = run(reqs, ordering=EDFQueue(), **ONE)
    assert recs[0].finish_s > 0.6
    assert start_order(recs) == [0, 2, 1, 3]
    assert recs[2].first_token_s <= 3.0


def test_edf_least_slack_counts_prefill_time() -> None:
    # P: 2000-token prompt due at 2.5 s; Q: 10 tokens due at 1.9 s. At 1 ms per prefill token
    # P must start by 0.5 s and Q by 1.89 s: least slack runs P first; pure EDF runs Q first.
    reqs = [Request(0, 0.0, 2000, 5, deadline_s=2.5), Request(1, 0.0, 10, 5, deadline_s=1.9)]
    recs, _ = run(reqs, ordering=EDFQueue(prefill_s_per_token=1e-3), **ONE)
    assert start_order(recs) == [0, 1]
    recs, _ = run(reqs, ordering=EDFQueue(prefill_s_per_token=0.0), **ONE)
    assert start_order(recs) == [1, 0]
    q = EDFQueue(prefill_s_per_token=1e-3)
    assert q.slack(seq(reqs[0]), 0.1) == pytest.approx(0.4)


# ---------------------------------------------------------------- vtc


class _GapRecorder:
    """Mixin: before each pop while both tenants wait, record |counter(h) - counter(l)|
    (VTC's counters, lift included; for FCFS the same cost w_in * prompt + w_out * output)."""

    def bind(self, engine) -> None:
        self.eng = engine
        self.gaps: list[float] = []
        self.waiting = {"h": 0, "l": 0}
        if hasattr(super(), "bind"):
            super().bind(engine)

    def push(self, s) -> None:
        self.waiting[s.req.tenant] += 1
        super().push(s)

    def push_front(self, s) -> None:
        self.waiting[s.req.tenant] += 1
        super().push_front(s)

    def pop(self, now):
        if min(self.waiting.values()) > 0:
            if isinstance(self, VTCQueue):
                c = {t: self.counter(t) for t in "hl"}
            else:
                c = {t: 1.0 * p + 2.0 * o for t in "hl" for p, o in [self.eng.tenant_service(t)]}
            self.gaps.append(abs(c["h"] - c["l"]))
        s = super().pop(now)
        self.waiting[s.req.tenant] -= 1
        return s


class GapVTC(_GapRecorder, VTCQueue):
    pass


class GapFCFS(_GapRecorder, FCFSQueue):
    pass


def two_tenants() -> list[Request]:
    # Both tenants send 100-token prompts for 100-token answers (cost 100 + 2 * 100 = 300);
    # the heavy tenant sends 60 requests, all queued before the light tenant's 20.
    heavy = [Request(i, 0.0001 * i, 100, 100, tenant="h") for i in range(60)]
    light = [Request(60 + i, 0.01 + 0.0001 * i, 100, 100, tenant="l") for i in range(20)]
    return heavy + light


def test_vtc_bounds_counter_gap_fcfs_lets_heavy_tenant_run_away() -> None:
    kw = dict(max_num_seqs=4, max_num_batched_tokens=512)
    vtc, fcfs = GapVTC(), GapFCFS()
    recs_v, _ = run(two_tenants(), ordering=vtc, **kw)
    recs_f, _ = run(two_tenants(), ordering=fcfs, **kw)
    assert all_done(recs_v) and all_done(recs_f)
    cost = 300
    assert len(vtc.gaps) >= 30  # both stayed backlogged for many decisions
    # VTC: within one batch's worth of service (4 seats x one request's cost; ~800 here,
    # the output still to come of requests in flight); FCFS: the whole heavy backlog.
    assert max(vtc.gaps) <= 4 * cost
    assert max(fcfs.gaps) >= 50 * cost  # FCFS serves the heavy backlog first
    # l joined while h was backlogged and already served: l's counter was lifted to h's.
    assert vtc._offset["l"] > 0 and "h" not in vtc._offset

    def light_mean_e2e(recs):
        light = [r.e2e_s for r in recs if r.tenant == "l"]
        return sum(light) / len(light)

    assert light_mean_e2e(recs_v) < 0.5 * light_mean_e2e(recs_f)


class _FakeEngine:
    def __init__(self, service: dict[str, tuple[int, int]]) -> None:
        self.service = service

    def tenant_service(self, tenant: str) -> tuple[int, int]:
        return self.service.get(tenant, (0, 0))


def test_vtc_lifts_counter_of_returning_tenant() -> None:
    eng = _FakeEngine({"a": (1000, 100), "b": (10, 0)})
    q = VTCQueue(w_in=1, w_out=2)
    q.bind(eng)
    q.push(seq(Request(1, 0.0, 10, 10, tenant="a")))  # nobody else waits: no lift
    assert q.counter("a") == 1200
    q.push(seq(Request(2, 0.0, 10, 10, tenant="b")))  # b returns: lifted from 10 to 1200
    assert q.counter("b") == 1200
    assert q.peek(0.0).req.id == 1  # equal counters: the earlier head
    q.push(seq(Request(3, 0.0, 10, 10, tenant="b")))  # b already backlogged: no lift
    assert q.counter("b") == 1200
    eng.service["a"] = (1000, 101)  # a's request decodes one more token
    assert q.peek(0.0).req.id == 2
    assert [q.pop(0.0).req.id for _ in range(3)] == [2, 3, 1]


def test_vtc_weights_scale_counters() -> None:
    q = VTCQueue(weights={"gold": 4.0})
    q.bind(_FakeEngine({"gold": (400, 0), "free": (150, 0)}))
    assert q.counter("gold") == 100 and q.counter("free") == 150
    with pytest.raises(InputError, match="weights"):
        VTCQueue(weights={"x": 0})


# ---------------------------------------------------------------- wfq


class PopLog(WFQQueue):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.log: list[str] = []

    def pop(self, now):
        s = super().pop(now)
        self.log.append(s.req.tenant)
        return s


def interleaved(n: int, sizes: dict[str, int]) -> list[Request]:
    """``n`` requests per tenant, all queued at t=0 (a0, b0, a1, b1, ...)."""
    reqs = []
    for _ in range(n):
        for t, out in sizes.items():
            reqs.append(Request(len(reqs), 0.0, 100, out, tenant=t))
    return reqs


def test_wfq_weights_two_to_one() -> None:
    q = PopLog(weights={"a": 2.0, "b": 1.0})
    recs, _ = run(interleaved(60, {"a": 50, "b": 50}), ordering=q, max_num_seqs=3)
    assert all_done(recs)
    first = q.log[:60]  # a's 60 requests are not all served yet: both stay backlogged
    assert first.count("a") < 60
    ratio = first.count("a") / first.count("b")
    assert ratio == pytest.approx(2.0, abs=0.15)


def test_wfq_shares_service_not_requests() -> None:
    # Equal weights; a's requests cost 100 + 300, b's 100 + 100: b gets twice the requests.
    q = PopLog()
    run(interleaved(40, {"a": 300, "b": 100}), ordering=q, max_num_seqs=2)
    first = q.log[:45]
    assert first.count("b") / first.count("a") == pytest.approx(2.0, abs=0.15)


def test_wfq_tags_by_hand() -> None:
    q = WFQQueue(weights={"a": 2.0})
    a1, a2 = seq(Request(1, 0.0, 100, 100, tenant="a")), seq(Request(2, 0.0, 100, 100, tenant="a"))
    b1 = seq(Request(3, 0.0, 100, 100, tenant="b"))
    for s in (a1, a2, b1):
        q.push(s)
    # cost 200 each. a (weight 2): [0, 100], [100, 200]. b (weight 1): V = min start = 0,
    # so [0, 200]. Order by finish: a1 (100), then a2 and b1 tie at 200: FCFS, a2.
    assert q.tags(a1) == (0.0, 100.0) and q.tags(a2) == (100.0, 200.0)
    assert q.tags(b1) == (0.0, 200.0)
    assert [q.pop(0.0) for _ in range(3)] == [a1, a2, b1]
    assert q.v == 200.0  # queue empty: V is the last served finish tag
    b2 = seq(Request(4, 0.0, 100, 100, tenant="b"))
    q.push(b2)
    assert q.tags(b2) == (200.0, 400.0)


# ---------------------------------------------------------------- efficiency


@pytest.mark.parametrize("name", sorted(ORDERING))
def test_orderings_handle_long_queues(name) -> None:
    n = 20_000
    seqs = [
        seq(
            Request(
                i,
                i * 1e-3,
                1 + (i * 7919) % 2000,
                1 + (i * 104729) % 1000,
                tenant=f"t{i % 50}",
                priority=i % 5,
                deadline_s=i * 1e-3 + (i % 13) * 0.3,
            )
        )
        for i in range(n)
    ]
    q = make(ORDERING, "ordering", name, {}, {"slo_classes": {}})
    for s in seqs:
        q.push(s)
    now, out = 0.0, []
    while len(q):
        head = q.peek(now)
        assert q.pop(now) is head
        out.append(head)
        now += 1e-3
    assert len(out) == n and len({id(s) for s in out}) == n


def test_fcfs_time_flags() -> None:
    assert FCFSQueue.time_invariant and PriorityQueue.time_invariant and SJFQueue.time_invariant
    assert WFQQueue.time_invariant and not EDFQueue.time_invariant
    assert not VTCQueue.time_invariant
    assert math.isfinite(EDFQueue().prefill_s_per_token)
