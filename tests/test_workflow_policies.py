"""Workflow policies by hand: workflow_affinity's pins, atomicity and priced steals (with its
ledger released on every path), and the urgency queue's stage deadlines and order."""

from __future__ import annotations

import pytest
from tests.conftest import RV, V

from fleetsched.core.request import CallInfo, Request
from fleetsched.core.views import RequestView
from fleetsched.engine.sequence import Seq
from fleetsched.errors import InputError
from fleetsched.metrics.records import RequestRecord
from fleetsched.policies.engine.urgency import UrgencyQueue
from fleetsched.policies.routing.workflow_affinity import WorkflowAffinity


def R(i: int, sid: str | None, prompt: int) -> RequestView:
    return RV(i, session_id=sid, prompt_tokens=prompt)


# ------------------------------------------------------------------ workflow_affinity
def test_branches_in_flight_never_split() -> None:
    r = WorkflowAffinity(seed=0)
    views = [V(0), V(1)]
    at = r.route(R(0, "w", 1000), views)
    # Load the pinned instance heavily with strangers: a branch of the same workflow still
    # follows while its sibling is in flight there.
    for i in range(1, 6):
        r.ledger.dispatch(R(100 + i, None, 5000), at)
    assert r.route(R(1, "w", 1000), views) == at
    assert r.steals == 0


def test_between_calls_a_move_is_priced() -> None:
    r = WorkflowAffinity(seed=0, request_tokens=64)
    views = [V(0), V(1)]
    first = r.route(R(0, "w", 1000), views)
    other = 1 - first
    r.on_finish(R(0, "w", 1000), first)
    assert r.ledger.requests == [0, 0] and r.ledger.prefill_tokens == [0, 0]
    # A stranger waits for its first token on the pinned instance: 500 tokens pending.
    r.ledger.dispatch(R(50, None, 500), first)
    # Next call, prompt 1200 extending the 1000 cached: at home 500 + 64 + 1200 - 1000 = 764,
    # elsewhere 1200. It stays.
    assert r.costs(R(1, "w", 1200), views)[first] == 764
    assert r.costs(R(1, "w", 1200), views)[other] == 1200
    assert r.route(R(1, "w", 1200), views) == first
    r.on_finish(R(1, "w", 1200), first)
    # With 1,500 tokens pending at home (764 + 1000 = 1764 > 1200) the workflow moves.
    r.ledger.dispatch(R(51, None, 1000), first)
    assert r.route(R(2, "w", 1200), views) == other
    assert r.steals == 1 and r.pinned("w") == other


def test_reuse_weight_zero_is_plain_least_work() -> None:
    r = WorkflowAffinity(seed=0, reuse_weight=0.0)
    views = [V(0), V(1)]
    a = r.route(R(0, "w", 1000), views)
    r.on_finish(R(0, "w", 1000), a)
    r.ledger.dispatch(R(9, None, 10), a)  # home is slightly busier
    assert r.route(R(1, "w", 1100), views) == 1 - a


def test_no_session_ties_are_random_and_seeded() -> None:
    picks = {WorkflowAffinity(seed=s).route(R(0, None, 100), [V(0), V(1), V(2)]) for s in range(12)}
    assert picks == {0, 1, 2}


def test_bad_parameters() -> None:
    with pytest.raises(InputError):
        WorkflowAffinity(request_tokens=-1)
    with pytest.raises(InputError):
        WorkflowAffinity(max_sessions=0)


# ------------------------------------------------------------------ urgency
def _seq(i: int, arrival: float, prompt: int, out: int, call: CallInfo | None) -> Seq:
    req = Request(id=i, arrival_s=arrival, prompt_tokens=prompt, output_tokens=out, call=call)
    rec = RequestRecord(
        id=i,
        tenant="default",
        slo_class="default",
        priority=0,
        prompt_tokens=prompt,
        output_tokens=out,
        arrival_s=arrival,
        deadline_s=float("nan"),
    )
    seq = Seq(req, rec)
    seq.target = prompt  # as the engine sets it on arrival
    return seq


def test_stage_deadline_is_the_call_share_of_the_budget_left() -> None:
    q = UrgencyQueue(prefill_s_per_token=2e-5, decode_s_per_token=0.015)
    # own = 1000 x 2e-5 + 100 x 0.015 = 1.52 s; rest 3.04 s: a third of the 10 s left.
    s = _seq(0, 0.0, 1000, 100, CallInfo(workflow=1, index=0, deadline_s=10.0, rest_s=3.04))
    assert q.stage_deadline(s.req) == pytest.approx(10.0 / 3)
    assert q.latest_start(s) == pytest.approx(10.0 / 3 - 1.52)
    # The last call of a workflow (rest 0) gets all the budget left.
    last = _seq(1, 4.0, 1000, 100, CallInfo(workflow=1, index=3, deadline_s=10.0, rest_s=0.0))
    assert q.stage_deadline(last.req) == pytest.approx(10.0)


def test_most_urgent_first_and_fcfs_among_equals() -> None:
    q = UrgencyQueue(prefill_s_per_token=0.0, decode_s_per_token=0.01)
    lax = _seq(0, 0.0, 10, 100, CallInfo(workflow=1, index=0, deadline_s=100.0, rest_s=0.0))
    tight = _seq(1, 0.5, 10, 100, CallInfo(workflow=2, index=0, deadline_s=3.0, rest_s=0.0))
    twin_a = _seq(2, 0.5, 10, 100, CallInfo(workflow=3, index=0, deadline_s=50.0, rest_s=0.0))
    twin_b = _seq(3, 0.5, 10, 100, CallInfo(workflow=4, index=0, deadline_s=50.0, rest_s=0.0))
    for s in (lax, twin_a, twin_b, tight):
        q.push(s)
    order = [q.pop(0.0).req.id for _ in range(4)]
    assert order == [1, 2, 3, 0]  # latest starts 2, 49, 49, 99


def test_a_request_outside_workflows_is_due_per_its_slo() -> None:
    q = UrgencyQueue(slo_classes={"default": {"ttft_s": 1.0, "tpot_s": 0.1}})
    s = _seq(0, 2.0, 100, 11, None)
    assert q.stage_deadline(s.req) == pytest.approx(2.0 + 1.0 + 0.1 * 10)
