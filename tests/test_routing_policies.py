"""Each routing policy's behaviour on hand-built views."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import V

from fleetsched.core.request import chain_hashes
from fleetsched.core.views import RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing import make_router
from fleetsched.policies.routing.cache_aware import CacheAware
from fleetsched.policies.routing.consistent_hash import ConsistentHash
from fleetsched.policies.routing.dualmap import DualMap
from fleetsched.policies.routing.framework import kv_score, prefix_score, queue_score
from fleetsched.policies.routing.kv_overlap import KVOverlap
from fleetsched.policies.routing.llumnix import Llumnix
from fleetsched.policies.routing.pd_disagg import PDDisagg
from fleetsched.policies.routing.power_of_two import PowerOfTwo
from fleetsched.policies.routing.session_affinity import SessionAffinity


def R(
    i: int = 0, ids: tuple[int, ...] | None = None, prompt: int | None = None, **kw: object
) -> RequestView:
    """A request whose prompt is the blocks ``ids`` (chained), 16 tokens each."""
    ids = ids if ids is not None else (i + 1000,)
    d: dict[str, object] = dict(
        id=i,
        prompt_tokens=prompt if prompt is not None else 16 * len(ids),
        block_hashes=chain_hashes(ids),
        hash_block_tokens=16,
        tenant="t",
        priority=0,
        session_id=None,
        slo_class="default",
        model=None,
        deadline_s=None,
    )
    d.update(kw)
    return RequestView(**d)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- baselines
def test_round_robin_cycles_and_skips_unhealthy():
    r = make_router("round_robin")
    vs = [V(0), V(1, healthy=False), V(2)]
    assert [r.route(R(k), vs) for k in range(5)] == [0, 2, 0, 2, 0]


def test_random_is_uniform_over_healthy():
    r = make_router("random", seed=4)
    vs = [V(0), V(1, healthy=False), V(2), V(3)]
    c = Counter(r.route(R(k), vs) for k in range(3000))
    assert set(c) == {0, 2, 3}
    assert all(900 < n < 1100 for n in c.values())


def test_least_requests_argmin_with_index_tiebreak():
    r = make_router("least_requests")
    vs = [V(0, queue_len=3), V(1, running=2), V(2, queue_len=1, running=1), V(3, running=5)]
    assert r.route(R(), vs) == 1  # 1 and 2 tie at 2 outstanding -> lower index
    assert r.route(R(), [V(4, running=1), V(2, running=1)]) == 2  # index, not position


def test_least_kv_argmin_with_index_tiebreak():
    r = make_router("least_kv")
    vs = [
        V(0, kv_utilization=0.5),
        V(1, kv_utilization=0.2),
        V(2, kv_utilization=0.2),
        V(3, kv_utilization=0.1, healthy=False),
    ]
    assert r.route(R(), vs) == 1


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=2, max_size=12),
    st.integers(0, 10_000),
)
def test_power_of_two_never_picks_the_more_loaded_of_its_two(loads, seed):
    r = PowerOfTwo(seed=seed)
    vs = [V(i, queue_len=q, running=n) for i, (q, n) in enumerate(loads)]
    for k in range(5):
        pick = r.route(R(k), vs)
        a, b = r.last_pair  # type: ignore[misc]
        assert a != b and pick in (a, b)
        other = b if pick == a else a
        assert vs[pick].outstanding <= vs[other].outstanding


# ---------------------------------------------------------------------- consistent hash
def _keys(n: int) -> list[RequestView]:
    return [R(k, ids=(k * 7919 + 13, 5, 6)) for k in range(n)]


def test_consistent_hash_moves_only_the_leaving_instances_keys():
    reqs = _keys(3000)
    vs = [V(i) for i in range(10)]
    r = ConsistentHash(load_factor=None)
    before = [r.route(q, vs) for q in reqs]
    kept_fracs = []
    for leave in range(10):
        after = [r.route(q, [v for v in vs if v.index != leave]) for q in reqs]
        for b, a in zip(before, after, strict=True):
            assert (a != b) == (b == leave)  # exactly the leaver's keys move
        kept_fracs.append(sum(a == b for a, b in zip(before, after, strict=True)) / len(reqs))
    # Optimal is 1 - 1/n = 90 % on average over who leaves; each one stays close.
    assert sum(kept_fracs) / 10 >= 0.9 - 1e-9
    assert min(kept_fracs) >= 0.86
    assert r.route(reqs[0], vs) == before[0]  # back to the full ring: same owners


def test_consistent_hash_bounded_load_keeps_keys_when_balanced():
    reqs = _keys(2000)
    vs = [V(i, running=3) for i in range(10)]
    plain, bounded = ConsistentHash(load_factor=None), ConsistentHash(load_factor=1.25)
    assert bounded.needs_views and not plain.needs_views
    before = [bounded.route(q, vs) for q in reqs]
    assert before == [plain.route(q, vs) for q in reqs]
    after = [bounded.route(q, vs[:3] + vs[4:]) for q in reqs]
    assert sum(a == b for a, b in zip(before, after, strict=True)) / len(reqs) >= 0.86


def test_consistent_hash_bounded_load_skips_full_instance():
    vs = [V(i) for i in range(10)]
    q = _keys(1)[0]
    owner = ConsistentHash(load_factor=None).route(q, vs)
    hot = [V(i, running=50 if i == owner else 1) for i in range(10)]
    # total 59 -> cap = ceil(1.25 * 60 / 10) = 8: the owner (50) is skipped.
    r = ConsistentHash(load_factor=1.25)
    pick = r.route(q, hot)
    assert pick != owner
    assert pick == ConsistentHash(load_factor=None).route(q, [v for v in vs if v.index != owner])
    assert ConsistentHash(load_factor=None).route(q, hot) == owner  # unbounded ignores load


def test_consistent_hash_session_key():
    vs = [V(i) for i in range(8)]
    r = ConsistentHash(key="session", load_factor=None)
    picks = {r.route(R(k, ids=(k, k + 1), session_id="abc"), vs) for k in range(50)}
    assert len(picks) == 1
    spread = {r.route(R(k, ids=(7,), session_id=f"s{k}"), vs) for k in range(200)}
    assert len(spread) == 8
    with pytest.raises(InputError):
        ConsistentHash(key="tenant")
    with pytest.raises(InputError):
        ConsistentHash(load_factor=0.5)


# -------------------------------------------------------------------------- cache_aware
P = tuple(range(100, 108))  # a shared 8-block prefix


def test_cache_aware_follows_longest_prefix_until_imbalance_then_shortest_queue():
    r = CacheAware(tree_block_tokens=16, balance_abs_threshold=4)
    assert not r.needs_prefix
    vs = [V(i) for i in range(4)]
    picks, reasons = [], []
    for k in range(9):
        picks.append(r.route(R(k, ids=(*P, 500 + k, 600 + k)), vs))  # match rate 0.8
        reasons.append(r.last_reason)
    # First: all trees empty -> smallest tree (index 0). Then the prefix holder, until its
    # router-side load is 5 > 0 + 4: imbalanced -> shortest queue (1, 2, 3). Balanced again
    # at loads [5, 1, 1, 1]: every instance now holds the prefix, least loaded wins.
    assert picks == [0, 0, 0, 0, 0, 1, 2, 3, 1]
    assert reasons == ["smallest_tree"] + ["cache"] * 4 + ["imbalanced"] * 3 + ["cache"]
    for k in range(5):
        r.on_finish(R(k), 0)
    assert r.outstanding(0) == 0
    # Loads [0, 2, 1, 1], balanced: holders all match 8 blocks -> least loaded holder (0).
    assert r.route(R(99, ids=(*P, 1, 2)), vs) == 0


def test_cache_aware_low_match_goes_to_smallest_tree_and_ignores_engine_prefix():
    r = CacheAware(tree_block_tokens=16)
    vs = [V(i, cached_prefix_tokens=160 if i == 3 else 0) for i in range(4)]
    assert r.route(R(0, ids=(*P, 1, 2)), vs) == 0
    assert r.route(R(1, ids=(1, 2, 3, 4)), vs) == 1  # no match -> smallest tree
    assert r.route(R(2, ids=(*P[:4], 9, 9, 9, 9, 9, 9)), vs) == 2  # rate 0.4 <= 0.5
    assert r.last_reason == "smallest_tree"
    assert r.route(R(3, ids=(*P[:6], 9, 9, 9, 9)), vs) == 0  # rate 0.6 > 0.5
    assert r.last_reason == "cache"
    r2 = CacheAware(tree_block_tokens=16, cache_threshold=0.7)
    r2.route(R(0, ids=P), vs)
    assert r2.route(R(3, ids=(*P[:6], 9, 9, 9, 9)), vs) == 1  # 0.6 <= 0.7


def test_cache_aware_skips_unhealthy_holder():
    r = CacheAware(tree_block_tokens=16)
    vs = [V(i) for i in range(3)]
    assert r.route(R(0, ids=P), vs) == 0
    down = [V(0, healthy=False), V(1), V(2)]
    assert r.route(R(1, ids=P), down) == 1


def test_cache_aware_tree_granularity():
    r = CacheAware()  # 64-token tree blocks: every 4th 16-token hash
    vs = [V(i) for i in range(2)]
    hs, unit = r.tree_keys(R(0, ids=tuple(range(10))))
    assert unit == 64 and hs == chain_hashes(tuple(range(10)))[3::4]
    assert r.route(R(0, ids=tuple(range(10))), vs) == 0
    assert r.tree_blocks(0) == 2
    # Shares 8 of 10 blocks = 2 tree blocks = 128 tokens of 160 -> 0.8 > 0.5.
    assert r.route(R(1, ids=(*range(8), 77, 78)), vs) == 0
    assert r.last_reason == "cache"
    short = CacheAware(max_prefix_blocks=2)
    assert len(short.tree_keys(R(0, ids=tuple(range(40))))[0]) == 2
    # A long prompt is judged on the tracked head: 2 of 2 tree blocks match -> cache.
    assert short.route(R(0, ids=tuple(range(40))), vs) == 0
    assert short.route(R(1, ids=(*range(8), *range(500, 532))), vs) == 0
    assert short.last_reason == "cache"


def test_cache_aware_tree_is_bounded_lru_and_prefix_closed():
    r = CacheAware(tree_block_tokens=16, max_tree_blocks=24)
    vs = [V(0)]
    a, b, c = (tuple(range(s, s + 10)) for s in (0, 100, 200))
    for k, ids in enumerate((a, b, a, c)):  # a touched after b -> b is the LRU
        r.route(R(k, ids=ids), vs)
    assert r.tree_blocks(0) <= 24
    ha, hb, hc = (chain_hashes(x) for x in (a, b, c))
    assert r.match_blocks(0, ha) == 10 and r.match_blocks(0, hc) == 10
    assert r.match_blocks(0, hb) == 0
    # Many prompts sharing prefixes of different lengths: the bound holds and every stored
    # path is prefix-closed (block i held => blocks < i held).
    r = CacheAware(tree_block_tokens=16, max_tree_blocks=40)
    tree_paths = []
    for k in range(300):
        ids = (*tuple(range(k % 7)), k % 13, k % 5, k)
        tree_paths.append(chain_hashes(ids))
        r.route(R(k, ids=ids), vs)
        assert r.tree_blocks(0) <= 40
    tree = r._trees[0]
    for hs in tree_paths:
        held = [h in tree for h in hs]
        assert held == sorted(held, reverse=True)


# --------------------------------------------------------------------------- prefix_load
def test_prefix_load_is_llm_d_default_profile():
    r = make_router("prefix_load")
    assert r.needs_prefix and r.needs_views
    assert [(s, w) for s, w in r.scorers] == [
        (prefix_score, 3.0),
        (queue_score, 2.0),
        (kv_score, 2.0),
    ]
    vs = [
        V(0, running=10, kv_utilization=0.5),  # 3*0 + 2*0 + 2*0.5 = 1
        V(1, running=5, kv_utilization=0.5, cached_prefix_tokens=80),  # 1.5 + 1 + 1 = 3.5
        V(2, running=0, kv_utilization=0.9),  # 0 + 2 + 0.2 = 2.2
    ]
    assert r.route(R(prompt=160), vs) == 1
    r2 = make_router("prefix_load", {"prefix_weight": 1.0})  # 0.5 + 1 + 1 = 2.5 > 2.2
    assert r2.route(R(prompt=160), vs) == 1
    r3 = make_router("prefix_load", {"prefix_weight": 0.0})  # 2 vs 2.2
    assert r3.route(R(prompt=160), vs) == 2


# ---------------------------------------------------------------------------- kv_overlap
def test_kv_overlap_hand_computed_costs():
    # Prompt 160 tokens = 10 blocks of 16.
    vs = [
        V(0, kv_utilization=0.10, total_blocks=100),  # 1*10 + (10 + 10) = 30
        V(1, kv_utilization=0.20, total_blocks=100, cached_prefix_tokens=128),  # 2 + 22 = 24
        V(2, kv_utilization=0.25, total_blocks=100, cached_prefix_tokens=160),  # 0 + 25 = 25
    ]
    r = KVOverlap()
    assert r.costs(R(prompt=160, ids=tuple(range(10))), vs) == pytest.approx([30, 24, 25])
    assert r.route(R(prompt=160, ids=tuple(range(10))), vs) == 1
    heavy = KVOverlap(overlap_weight=3.0)  # 30 + 20 = 50, 6 + 22 = 28, 0 + 25 = 25
    assert heavy.costs(R(prompt=160), vs) == pytest.approx([50, 28, 25])
    assert heavy.route(R(prompt=160), vs) == 2
    # Partial last block: 150 tokens -> 10 request blocks; 8 cached blocks -> 22/16 prefill.
    assert r.costs(R(prompt=150), vs[1:2]) == pytest.approx([22 / 16 + 20 + 2])
    tie = [V(3, kv_utilization=0.1, total_blocks=100), V(1, kv_utilization=0.1, total_blocks=100)]
    assert r.route(R(prompt=160), tie) == 1


def test_kv_overlap_temperature_samples_softmax():
    vs = [V(0, kv_utilization=0.0, total_blocks=100), V(1, kv_utilization=0.5, total_blocks=100)]
    cold = KVOverlap(temperature=0.0)
    assert {cold.route(R(k, prompt=160), vs) for k in range(50)} == {0}
    warm = KVOverlap(temperature=1.0, seed=1)
    c = Counter(warm.route(R(k, prompt=160), vs) for k in range(4000))
    # Normalised costs 0 and 1: p(1) = e^-1 / (1 + e^-1) ~ 0.269.
    assert 0.24 < c[1] / 4000 < 0.30
    with pytest.raises(InputError):
        KVOverlap(temperature=-1)


# ------------------------------------------------------------------------------- dualmap
def test_dualmap_picks_one_of_its_two_candidates():
    vs = [V(i, queue_len=i % 3, running=(5 * i) % 7) for i in range(8)]
    r = DualMap(hot_factor=100.0, ttft_slo_s=100.0)
    assert r.needs_prefix
    seen = set()
    for k in range(300):
        q = R(k, ids=(k * 31 + 7, 1, 2))
        a, b = r.candidates(q, vs)
        assert a.index != b.index
        pick = r.route(q, vs)
        assert pick in (a.index, b.index) and r.last_candidates == (a.index, b.index)
        assert not r.last_switched
        better = min((a, b), key=lambda v: (r.predict_ttft_s(q, v), v.outstanding, v.index))
        assert pick == better.index
        seen.update((a.index, b.index))
    assert len(seen) == 8  # distinct prefixes spread their candidates over the fleet
    q = R(1, ids=(42, 43))
    assert r.candidates(q, vs) == r.candidates(R(2, ids=(42, 99)), vs)  # same first block


def test_dualmap_predicted_ttft_and_cache_preference():
    r = DualMap(
        ttft_base_s=0.01, ttft_per_queued_s=0.1, ttft_per_running_s=0.01, ttft_per_token_s=1e-3
    )
    v = V(0, queue_len=2, running=3, cached_prefix_tokens=100)
    assert r.predict_ttft_s(R(prompt=300), v) == pytest.approx(0.01 + 0.2 + 0.03 + 0.2)
    q = R(0, ids=(5, 6, 7, 8))
    _a, b = r.candidates(q, [V(i) for i in range(6)])
    vs = [V(i, cached_prefix_tokens=64 if i == b.index else 0) for i in range(6)]
    assert r.route(q, vs) == b.index  # the candidate with the cached prefix is faster


def test_dualmap_slo_switch_fires_only_above_slo():
    base = [V(i) for i in range(6)]
    r = DualMap(
        ttft_slo_s=0.3,
        ttft_base_s=0.0,
        ttft_per_queued_s=0.1,
        ttft_per_running_s=0.0,
        ttft_per_token_s=0.0,
        hot_factor=1000.0,
    )
    q = R(0, ids=(11, 12))
    a, b = r.candidates(q, base)
    others = [i for i in range(6) if i not in (a.index, b.index)]
    busy = [
        V(i, queue_len=4 if i in (a.index, b.index) else (1 if i == others[0] else 2))
        for i in range(6)
    ]  # candidates predict 0.4 s > 0.3 s
    assert r.route(q, busy) == others[0] and r.last_switched
    ok = [V(i, queue_len=2 if i in (a.index, b.index) else 0) for i in range(6)]  # 0.2 s
    assert r.route(q, ok) in (a.index, b.index) and not r.last_switched


def test_dualmap_hotspot_remaps_key_to_coolest():
    r = DualMap(hot_factor=2.0, ttft_slo_s=100.0)
    q = R(0, ids=(21, 22))
    base = [V(i, running=2) for i in range(8)]
    a, b = r.candidates(q, base)
    cool = next(i for i in range(8) if i not in (a.index, b.index))
    hot = [V(i, running=40 if i == a.index else (0 if i == cool else 2)) for i in range(8)]
    pick = r.route(q, hot)
    assert r.last_candidates == (cool, b.index)
    assert pick in (cool, b.index)
    # The override sticks for the key even when the hotspot has cooled down.
    assert r.candidates(q, base)[0].index == cool
    # ... unless that instance goes away.
    gone = [v for v in base if v.index != cool]
    assert r.candidates(q, gone)[0].index == a.index


# ------------------------------------------------------------------------------- llumnix
def test_llumnix_dispatch_maximises_freeness():
    r = Llumnix(priority_headroom_blocks=100.0)
    vs = [
        V(0, free_blocks=500, running=10),  # 50
        V(1, free_blocks=300, running=2),  # 150
        V(2, free_blocks=900, running=8),  # 112.5
        V(3, free_blocks=2000, running=1, healthy=False),
    ]
    assert [r.freeness(v) for v in vs[:3]] == [50.0, 150.0, 112.5]
    assert r.route(R(0, prompt=160, priority=1), vs) == 1
    # Instance 1 now carries a high-priority request: 100 blocks of headroom -> (300-100)/2
    assert r.freeness(vs[1]) == 100.0
    assert r.route(R(1, prompt=160), vs) == 2
    # Queued requests count with the mean prompt blocks routed there (10 blocks each).
    queued = V(2, free_blocks=900, running=8, queue_len=4)
    assert r.freeness(queued) == (900 - 4 * 10) / 8
    r.on_finish(R(0, prompt=160, priority=1), 1)
    assert r.freeness(vs[1]) == 150.0


def test_llumnix_plan_migrations_pairs_hot_with_cold():
    r = Llumnix(migrate_out_threshold=1.0, migrate_in_threshold=16.0, migration_interval_s=0.5)
    assert r.migration_interval_s == 0.5 and Llumnix.migration_interval_s == 0.1
    vs = [
        V(0, free_blocks=0, running=4, queue_len=0),  # 0 -> out
        V(1, free_blocks=100, running=4),  # 25 -> in
        V(2, free_blocks=2, running=4),  # 0.5 -> out
        V(3, free_blocks=1000, running=2),  # 500 -> in (freest)
        V(4, free_blocks=40, running=4),  # 10 -> neither
        V(5, free_blocks=0, running=0),  # nothing to migrate
        V(6, free_blocks=5000, running=1, healthy=False),  # unhealthy: never a destination
    ]
    assert r.plan_migrations(vs) == [(0, 3), (2, 1)]
    assert r.plan_migrations(vs[4:]) == []
    with pytest.raises(InputError):
        Llumnix(migrate_out_threshold=5, migrate_in_threshold=1)


# ---------------------------------------------------------------------- session_affinity
def test_session_affinity_pins_and_steals():
    r = SessionAffinity(steal_bound=2.0)
    vs = [V(0, running=3), V(1, running=1), V(2, running=2), V(3, running=2)]
    assert r.route(R(0, session_id="a"), vs) == 1  # first call: least loaded
    assert r.pinned("a") == 1
    later = [V(0, running=1), V(1, running=4), V(2, running=2), V(3, running=2)]
    assert r.route(R(1, session_id="a"), later) == 1  # 4 <= 2 * 2.25: stays
    hot = [V(0, running=1), V(1, running=12), V(2, running=2), V(3, running=1)]
    assert r.route(R(2, session_id="a"), hot) == 0  # 12 > 2 * 4: stolen to least loaded
    assert r.pinned("a") == 0 and r.steals == 1
    assert r.route(R(3, session_id="a"), later) == 0  # the new pin holds
    assert r.route(R(4), later) == 0  # no session: least loaded
    down = [V(0, healthy=False), V(1, running=4), V(2, running=2), V(3, running=3)]
    assert r.route(R(5, session_id="a"), down) == 2  # pinned instance down: re-pin


def test_session_affinity_low_load_does_not_steal():
    r = SessionAffinity(steal_bound=2.0)
    vs = [V(i) for i in range(4)]
    assert r.route(R(0, session_id="x"), vs) == 0
    assert r.route(R(1, session_id="x"), [V(0, running=2), *vs[1:]]) == 0  # 2 <= 2*max(.5,1)


def test_session_affinity_bounded_pins():
    r = SessionAffinity(max_sessions=3)
    vs = [V(i) for i in range(4)]
    for k in range(5):
        r.route(R(k, session_id=f"s{k}"), vs)
    assert r.pinned("s0") is None and r.pinned("s4") is not None


# ----------------------------------------------------------------------------- pd_disagg
@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["prefill", "decode", "mixed"]),
            st.booleans(),
            st.integers(0, 9),
            st.floats(0, 1),
            st.integers(0, 10),
        ),
        min_size=1,
        max_size=10,
    ),
    st.sampled_from(["least", "prefix"]),
)
def test_pd_disagg_never_returns_the_wrong_role(rows, mode):
    vs = [
        V(i, role=ro, healthy=h, running=n, kv_utilization=k, cached_prefix_tokens=16 * c)
        for i, (ro, h, n, k, c) in enumerate(rows)
    ]
    r = PDDisagg(prefill=mode)
    p, d = r.route(R(), vs), r.pick_decode(R(), vs)
    assert 0 <= p < len(vs) and 0 <= d < len(vs)
    if any(v.healthy and v.role == "prefill" for v in vs):
        assert vs[p].role == "prefill" and vs[p].healthy
    if any(v.healthy and v.role == "decode" for v in vs):
        assert vs[d].role == "decode" and vs[d].healthy
    if any(v.healthy for v in vs):
        assert vs[p].healthy and vs[d].healthy


def test_pd_disagg_choices():
    vs = [
        V(0, role="prefill", running=3, cached_prefix_tokens=64),
        V(1, role="prefill", running=1),
        V(2, role="decode", kv_utilization=0.5, running=1),
        V(3, role="decode", kv_utilization=0.2, running=9),
        V(4, role="decode", kv_utilization=0.2, running=2),
    ]
    assert PDDisagg().route(R(), vs) == 1
    assert not PDDisagg().needs_prefix
    prefix = PDDisagg(prefill="prefix")
    assert prefix.needs_prefix and prefix.route(R(), vs) == 0
    assert PDDisagg().pick_decode(R(), vs) == 4
    assert PDDisagg().pick_decode(R(), vs[2:]) == 4  # the simulator passes decode views only
    assert math.isfinite(PDDisagg().route(R(), [V(0)]))
