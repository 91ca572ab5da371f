"""The filter -> scorer -> picker framework: each plugin alone, then wired in a Profile."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import RV, V

from fleetsched.core.views import RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream
from fleetsched.policies.routing.framework import (
    Profile,
    healthy,
    kv_score,
    load_score,
    lora_score,
    make_profile,
    max_score,
    model_match,
    not_saturated,
    outstanding_score,
    power_of_two,
    prefix_score,
    queue_score,
    role,
    weighted_random,
)


def R(i: int = 0, prompt: int = 160, model: str | None = None, **kw: object) -> RequestView:
    d: dict[str, object] = dict(
        prompt_tokens=prompt,
        block_hashes=tuple(range(1, prompt // 16 + 1)),
        tenant="t",
        model=model,
    )
    d.update(kw)
    return RV(i, **d)


# ------------------------------------------------------------------------------ filters
def test_healthy_filter_drops_unhealthy():
    vs = [V(0), V(1, healthy=False), V(2)]
    assert [v.index for v in healthy(R(), vs)] == [0, 2]


def test_model_match_none_matches_all_and_lora_counts():
    vs = [V(0, model="a"), V(1, model="b"), V(2, model="b", lora_adapters=("a",))]
    assert model_match(R(model=None), vs) == vs
    assert [v.index for v in model_match(R(model="a"), vs)] == [0, 2]
    assert model_match(R(model="zzz"), vs) == []


def test_role_filter():
    vs = [V(0, role="prefill"), V(1, role="decode"), V(2, role="mixed")]
    assert [v.index for v in role("prefill")(R(), vs)] == [0]
    assert [v.index for v in role("decode", "mixed")(R(), vs)] == [1, 2]


def test_not_saturated_thresholds_and_fallback():
    vs = [V(0, queue_len=10), V(1, kv_utilization=0.99), V(2, queue_len=3, kv_utilization=0.5)]
    f = not_saturated(max_queue=5, max_kv=0.9)
    assert [v.index for v in f(R(), vs)] == [2]
    assert [v.index for v in not_saturated(max_queue=None, max_kv=0.9)(R(), vs)] == [0, 2]
    everyone_full = [V(0, queue_len=10), V(1, queue_len=20)]
    assert f(R(), everyone_full) == everyone_full  # nobody passes -> all pass


# ------------------------------------------------------------------------------ scorers
def test_queue_score_counts_waiting_requests_like_the_endpoint_picker():
    # GIE / llm-d queue-scorer: WaitingQueueSize only, min-max normalised.
    vs = [V(0, queue_len=0, running=30), V(1, queue_len=2, running=3), V(2, queue_len=4)]
    assert queue_score(R(), vs) == [1.0, 0.5, 0.0]
    assert queue_score(R(), [V(0, running=4), V(1, running=9)]) == [1.0, 1.0]
    assert outstanding_score(R(), vs) == pytest.approx([0.0, 25 / 26, 1.0])


def test_kv_prefix_load_lora_scores():
    vs = [
        V(0, kv_utilization=0.25, cached_prefix_tokens=80, inflight_tokens=100),
        V(
            1,
            kv_utilization=1.0,
            cached_prefix_tokens=160,
            inflight_tokens=300,
            lora_adapters=("x",),
        ),
    ]
    assert kv_score(R(), vs) == [0.75, 0.0]
    assert prefix_score(R(prompt=160), vs) == [0.5, 1.0]
    assert prefix_score(R(prompt=0), vs) == [0.0, 0.0]
    assert prefix_score(R(prompt=100), vs) == [0.8, 1.0]  # clamped to 1
    assert load_score(R(), vs) == [1.0, 0.0]
    assert lora_score(R(model="x"), vs) == [0.0, 1.0]
    assert lora_score(R(model=None), vs) == [0.0, 0.0]


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50), st.floats(0, 1)), min_size=1, max_size=20
    )
)
def test_scores_are_in_unit_interval(rows):
    vs = [
        V(
            i,
            queue_len=q,
            running=r,
            kv_utilization=k,
            inflight_tokens=q * 7 + r,
            cached_prefix_tokens=16 * (q % 12),
        )
        for i, (q, r, k) in enumerate(rows)
    ]
    for scorer in (queue_score, outstanding_score, kv_score, prefix_score, load_score, lora_score):
        out = scorer(R(prompt=160, model="m"), vs)
        assert len(out) == len(vs)
        assert all(0.0 <= x <= 1.0 for x in out)


# ------------------------------------------------------------------------------ pickers
def test_max_score_breaks_ties_at_random_from_the_seed():
    vs = [V(5), V(2), V(7)]
    assert max_score(vs, [0.0, 0.0, 9.0], UniformStream(0)).index == 7
    rng = UniformStream(0)
    c = Counter(max_score(vs, [1.0, 3.0, 3.0], rng).index for _ in range(3000))
    assert set(c) == {2, 7} and 1350 < c[2] < 1650  # the two tied, evenly
    a, b = UniformStream(3), UniformStream(3)
    seq = [max_score(vs, [3.0, 3.0, 3.0], a).index for _ in range(50)]
    assert seq == [max_score(vs, [3.0, 3.0, 3.0], b).index for _ in range(50)]  # same seed


def test_weighted_random_follows_weights_and_skips_zero():
    rng = UniformStream(1)
    vs = [V(0), V(1), V(2)]
    c = Counter(weighted_random(vs, [0.0, 1.0, 3.0], rng).index for _ in range(4000))
    assert c[0] == 0
    assert 0.2 < c[1] / 4000 < 0.3
    zero = Counter(weighted_random(vs, [0.0, 0.0, 0.0], rng).index for _ in range(300))
    assert set(zero) == {0, 1, 2}  # all-zero scores: uniform


@settings(max_examples=200)
@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=2, max_size=16), st.integers(0, 99))
def test_power_of_two_picker_never_picks_the_unique_worst(scores, seed):
    vs = [V(i) for i in range(len(scores))]
    pick = power_of_two(vs, scores, UniformStream(seed))
    worst = min(scores)
    if scores.count(worst) == 1 and len(set(scores)) > 1:
        assert scores[pick.index] > worst


# ------------------------------------------------------------------------------ profile
def test_profile_weights_scores_and_needs_prefix():
    p = Profile([healthy], [(prefix_score, 3.0), (queue_score, 2.0)])
    assert p.needs_prefix and p.needs_views
    assert not Profile([healthy], [(queue_score, 1.0)]).needs_prefix
    vs = [
        V(0, cached_prefix_tokens=160, queue_len=10),
        V(1, queue_len=0),
        V(2, healthy=False, queue_len=0),
    ]
    # 0: 3*1 + 2*0 = 3; 1: 3*0 + 2*1 = 2 -> 0 wins; 2 unhealthy never considered.
    assert p.route(R(prompt=160), vs) == 0
    q = Profile([healthy], [(prefix_score, 1.0), (queue_score, 2.0)])
    assert q.route(R(prompt=160), vs) == 1


def test_profile_skips_a_filter_that_empties_the_set():
    p = Profile([healthy, model_match], [(queue_score, 1.0)])
    vs = [V(0, queue_len=3), V(1, queue_len=1), V(2, healthy=False)]
    assert p.route(R(model="unknown"), vs) == 1  # model filter empties -> skipped
    all_down = [V(0, healthy=False, queue_len=5), V(1, healthy=False, queue_len=2)]
    assert p.route(R(), all_down) == 1  # nothing healthy -> best of all


def test_profile_generic_sum_matches_manual_sum():
    vs = [
        V(
            i,
            queue_len=i % 3,
            kv_utilization=i / 10,
            cached_prefix_tokens=16 * i,
            inflight_tokens=100 * (5 - i),
        )
        for i in range(6)
    ]
    req = R(prompt=160)
    sc = [(queue_score, 1.0), (kv_score, 2.0), (prefix_score, 0.5), (load_score, 4.0)]
    got = Profile([], sc).scores(req, vs)
    want = [sum(w * s(req, vs)[k] for s, w in sc) for k in range(len(vs))]
    assert got == pytest.approx(want)
    for n in (1, 2, 3):
        got = Profile([], sc[:n]).scores(req, vs)
        want = [sum(w * s(req, vs)[k] for s, w in sc[:n]) for k in range(len(vs))]
        assert got == pytest.approx(want)


def test_profile_without_scorers_uses_picker_alone():
    p = Profile([healthy], [], seed=4)
    picks = Counter(p.route(R(k), [V(0, healthy=False), V(1), V(2)]) for k in range(400))
    assert set(picks) == {1, 2} and 150 < picks[1] < 250  # all score 0: a random tie


def test_make_profile_from_names():
    p = make_profile(
        seed=3,
        filters=["healthy", "not_saturated"],
        scorers={"prefix": 3, "queue": 2, "kv": 2},
        picker="power_of_two",
        max_queue=4,
    )
    assert p.needs_prefix
    assert [w for _, w in p.scorers] == [3.0, 2.0, 2.0]
    vs = [V(0, queue_len=9), V(1), V(2)]
    for i in range(50):
        assert p.route(R(i), vs) in (1, 2)  # instance 0 over max_queue
    with pytest.raises(InputError, match="unknown scorer"):
        make_profile(scorers={"nope": 1})
    with pytest.raises(InputError, match="unknown filter"):
        make_profile(filters=["nope"])
    with pytest.raises(InputError, match="unknown picker"):
        make_profile(picker="nope")
