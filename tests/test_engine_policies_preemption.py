"""Preemption victims: lowest_priority (with preempt-to-admit) and most_slack."""

from __future__ import annotations

from tests.test_engine_policies_helpers import all_done, run, seq

from fleetsched.core.request import Request
from fleetsched.policies.engine import (
    FCFSQueue,
    LowestPriorityVictim,
    MostSlackVictim,
    NewestVictim,
    PriorityQueue,
)

SEATS = dict(max_num_seqs=2, max_num_batched_tokens=512)


def seats_full(high_priority: int) -> list[Request]:
    # Two priority-0 requests fill both seats for ~1.5 s; a third arrives at 0.5 s.
    return [
        Request(0, 0.0, 100, 300),
        Request(1, 0.0, 100, 300),
        Request(2, 0.5, 100, 20, priority=high_priority),
    ]


def test_high_priority_arrival_preempts_lowest_priority_when_seats_are_full() -> None:
    recs, inst = run(
        seats_full(5), ordering=PriorityQueue(), preemption=LowestPriorityVictim(), **SEATS
    )
    assert all_done(recs)
    # It starts at the end of the engine step in progress at 0.5 s (one decode step, ~5 ms).
    assert 0.5 <= recs[2].first_scheduled_s < 0.51
    assert [r.preemptions for r in recs] == [0, 1, 0]  # the newest of the two equals
    assert inst.stats.preemptions == 1
    assert recs[1].finish_s > recs[2].finish_s


def test_equal_priority_arrival_waits_for_a_seat() -> None:
    recs, inst = run(
        seats_full(0), ordering=PriorityQueue(), preemption=LowestPriorityVictim(), **SEATS
    )
    assert inst.stats.preemptions == 0
    assert recs[2].first_scheduled_s == min(recs[0].finish_s, recs[1].finish_s)


def test_preempt_to_admit_needs_a_ranking_queue() -> None:
    # With FCFS the victim would be re-queued first and re-admitted at once: no displacement.
    recs, inst = run(
        seats_full(5), ordering=FCFSQueue(), preemption=LowestPriorityVictim(), **SEATS
    )
    assert inst.stats.preemptions == 0 and all_done(recs)
    assert recs[2].first_scheduled_s == min(recs[0].finish_s, recs[1].finish_s)


class _Engine:
    def __init__(self, waiting) -> None:
        self.waiting = waiting


def test_lowest_priority_victim_choice() -> None:
    s = [seq(Request(i, 0.0, 10, 10, priority=p)) for i, p in enumerate([1, 0, 2, 0, 3])]
    pol = LowestPriorityVictim()
    assert pol.victim(s) is s[3]  # lowest priority, newest among equals
    assert pol.victim(s[:3]) is s[1]
    head = seq(Request(9, 1.0, 10, 10, priority=1))
    assert pol.victim_for_admission(head, s) is None  # unbound: no ranking queue known
    pol.bind(_Engine(PriorityQueue()))
    assert pol.victim_for_admission(head, s) is s[3]
    assert pol.victim_for_admission(head, [s[0], s[2]]) is None  # nobody below priority 1
    assert pol.victim_for_admission(head, []) is None


def test_lowest_priority_respects_aging() -> None:
    # With aging, an old priority-0 request may rank before a young priority-1 arrival in
    # the queue; displacing it would only re-admit it at once, so it is left alone.
    pol = LowestPriorityVictim()
    pol.bind(_Engine(PriorityQueue(aging_per_s=0.5)))
    old = seq(Request(0, 0.0, 10, 10, priority=0))
    young = seq(Request(1, 10.0, 10, 10, priority=1))  # 0.5 * 10 > 1: old ranks first
    assert pol.victim_for_admission(young, [old]) is None
    recent = seq(Request(2, 9.5, 10, 10, priority=0))  # 0.5 * 0.5 < 1: young ranks first
    assert pol.victim_for_admission(young, [old, recent]) is recent
    pol.bind(_Engine(PriorityQueue(aging_per_s=0.05)))  # 0.05 * 10 < 1
    assert pol.victim_for_admission(young, [old]) is old


def test_most_slack_victim_by_hand() -> None:
    pol = MostSlackVictim(prefill_s_per_token=1e-3)
    a = seq(Request(0, 0.0, 1000, 10, deadline_s=1.0))  # 1000 tokens to prefill: 1.0 - 1.0
    b = seq(Request(1, 0.0, 100, 10, deadline_s=0.5))
    b.computed = 100  # prefilled: 0.5 - 0
    c = seq(Request(2, 0.0, 100, 10, deadline_s=0.5))
    c.computed = 100  # same slack as b, newer
    assert pol.slack_key(a) == 0.0 and pol.slack_key(b) == 0.5
    assert pol.victim([a, b]) is b
    assert pol.victim([a, b, c]) is c


def test_most_slack_preempts_the_lax_request_not_the_newest() -> None:
    # 14 blocks for three requests growing to 7 blocks each: somebody is preempted. Newest
    # takes request 2; most_slack takes request 0, whose deadline is far away.
    reqs = [
        Request(0, 0.0, 40, 60, deadline_s=100.0),
        Request(1, 0.0, 40, 60, deadline_s=0.05),
        Request(2, 0.0, 40, 60, deadline_s=0.06),
    ]
    kw = dict(blocks=14, max_num_seqs=8, max_num_batched_tokens=256)
    recs, _ = run(reqs, preemption=NewestVictim(), **kw)
    assert recs[0].preemptions == 0 and recs[2].preemptions >= 1
    recs, _ = run(reqs, preemption=MostSlackVictim(), **kw)
    assert all_done(recs)
    assert recs[0].preemptions >= 1 and recs[1].preemptions == 0
    assert recs[1].finish_s < recs[0].finish_s
