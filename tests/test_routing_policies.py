"""Each routing policy's behaviour on hand-built views."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import RV, V

from fleetsched.core.request import chain_hashes
from fleetsched.core.views import RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing import make_router
from fleetsched.policies.routing.cache_aware import CacheAware
from fleetsched.policies.routing.consistent_hash import ConsistentHash
from fleetsched.policies.routing.dualmap import DualMap
from fleetsched.policies.routing.framework import ApproxPrefixScorer, kv_score, queue_score
from fleetsched.policies.routing.kv_overlap import KVOverlap
from fleetsched.policies.routing.ledger import Ledger
from fleetsched.policies.routing.llumnix import Llumnix
from fleetsched.policies.routing.pd_disagg import PDDisagg
from fleetsched.policies.routing.power_of_two import PowerOfTwo
from fleetsched.policies.routing.prefix_index import PrefixIndex
from fleetsched.policies.routing.prefix_key import PrefixKey
from fleetsched.policies.routing.session_affinity import SessionAffinity


def R(
    i: int = 0, ids: tuple[int, ...] | None = None, prompt: int | None = None, **kw: object
) -> RequestView:
    """A request whose prompt is the blocks ``ids`` (chained), 16 tokens each."""
    ids = ids if ids is not None else (i + 1000,)
    d: dict[str, object] = dict(
        prompt_tokens=prompt if prompt is not None else 16 * len(ids),
        block_hashes=chain_hashes(ids),
        tenant="t",
    )
    d.update(kw)
    return RV(i, **d)


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


def _tie_counts(name: str, vs: list, n: int = 2000, seed: int = 0) -> Counter:
    r = make_router(name, seed=seed)
    return Counter(r.route(R(k), vs) for k in range(n))


def test_least_requests_argmin_with_random_tiebreak():
    vs = [V(0, queue_len=3), V(1, running=2), V(2, queue_len=1, running=1), V(3, running=5)]
    c = _tie_counts("least_requests", vs)
    assert set(c) == {1, 2} and 850 < c[1] < 1150  # 1 and 2 tie at 2 outstanding
    assert make_router("least_requests").route(R(), [V(4, running=1), V(2, running=0)]) == 2
    assert [make_router("least_requests", seed=5).route(R(k), vs) for k in range(20)] == [
        make_router("least_requests", seed=5).route(R(k), vs) for k in range(20)
    ]


def test_least_kv_argmin_with_random_tiebreak():
    vs = [
        V(0, kv_utilization=0.5),
        V(1, kv_utilization=0.2),
        V(2, kv_utilization=0.2),
        V(3, kv_utilization=0.1, healthy=False),
    ]
    c = _tie_counts("least_kv", vs)
    assert set(c) == {1, 2} and 850 < c[1] < 1150


@pytest.mark.parametrize(
    "name", ["least_requests", "least_kv", "session_affinity", "llumnix", "pd_disagg", "profile"]
)
def test_idle_fleet_ties_spread_over_every_instance(name):
    """A burst onto an idle fleet: every instance ties; the seeded generator spreads it."""
    vs = [V(i) for i in range(8)]
    r = make_router(name, seed=11)
    picks = [r.route(R(k, session_id=f"s{k}"), vs) for k in range(400)]
    assert set(picks) == set(range(8))
    r2 = make_router(name, seed=11)
    assert picks == [r2.route(R(k, session_id=f"s{k}"), vs) for k in range(400)]


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


def test_cache_aware_defaults_are_the_sglang_gateways():
    r = CacheAware()
    assert (r.cache_threshold, r.balance_abs_threshold, r.balance_rel_threshold) == (0.3, 64, 1.5)
    assert (r.eviction_interval_s, r.max_tree_tokens) == (120.0, 1 << 26)
    assert (r.low_match, r.holder) == ("min_load", "any")


def test_cache_aware_follows_longest_prefix_until_imbalance_then_least_loaded():
    r = CacheAware(tree_block_tokens=16, balance_abs_threshold=4, seed=3)
    assert not r.needs_prefix and not r.needs_views
    vs = [V(i) for i in range(4)]
    picks, reasons = [], []
    for k in range(8):
        picks.append(r.route(R(k, ids=(*P, 500 + k, 600 + k)), vs))  # match rate 0.8
        reasons.append(r.last_reason)
    # First: nothing cached -> least loaded (all tie: random). Then the prefix holder until its
    # router-side load is 5 > 0 + 4 and 5 > 1.5 * 0: imbalanced -> least loaded elsewhere.
    assert len(set(picks[:5])) == 1 and picks[5] != picks[0]
    assert reasons[:6] == ["low_match"] + ["cache"] * 4 + ["imbalanced"]
    assert r.outstanding(picks[0]) == 5
    for k in range(5):
        r.on_finish(R(k), picks[0])
    assert r.outstanding(picks[0]) == 0


def test_cache_aware_imbalance_needs_both_thresholds():
    r = CacheAware(tree_block_tokens=16, load="views", seed=1)
    assert r.needs_views
    hot = (*P, 1, 2)
    assert r.route(R(0, ids=hot), [V(0), V(1, running=9), V(2, running=9)]) == 0
    cases = [
        ([70, 0, 0], "imbalanced"),  # 70 - 0 > 64 and 70 > 1.5 * 0
        ([100, 40, 40], "cache"),  # 60 <= 64
        ([200, 135, 135], "cache"),  # 65 > 64 but 200 <= 1.5 * 135
        ([210, 135, 135], "imbalanced"),
    ]
    for k, (loads, reason) in enumerate(cases):
        pick = r.route(R(k + 1, ids=hot), [V(i, running=n) for i, n in enumerate(loads)])
        assert r.last_reason == reason, loads
        if reason == "imbalanced":
            assert loads[pick] == min(loads)


def test_cache_aware_low_match_goes_to_least_loaded_not_smallest_tree():
    r = CacheAware(tree_block_tokens=16, load="views")
    long = tuple(range(1, 21))
    assert r.route(R(0, ids=long), [V(0, running=5), V(1), V(2, running=5)]) == 1
    assert r.tree_blocks(1) == 20
    vs = [V(0, running=5), V(1), V(2, running=6)]
    assert r.route(R(1, ids=(900, 901)), vs) == 1  # least loaded, despite the biggest tree
    assert r.last_reason == "low_match"
    old = CacheAware(tree_block_tokens=16, load="views", low_match="smallest_tree")
    old.route(R(0, ids=long), [V(0, running=5), V(1), V(2, running=5)])
    assert old.route(R(1, ids=(900, 901)), vs) in (0, 2)  # the old rule: an empty tree
    # cache_threshold 0.3: a match of 3 of 10 blocks is not enough, 4 of 10 is.
    r2 = CacheAware(tree_block_tokens=16, load="views")
    ten = tuple(range(50, 60))
    r2.route(R(0, ids=ten), [V(0), V(1, running=3)])
    assert r2.route(R(1, ids=(*ten[:3], *range(70, 77))), [V(0, running=2), V(1)]) == 1
    assert r2.last_reason == "low_match"
    assert r2.route(R(2, ids=(*ten[:4], *range(80, 86))), [V(0, running=2), V(1)]) == 0
    assert r2.last_reason == "cache"


def test_cache_aware_hit_goes_to_any_holder_or_the_least_loaded_one():
    vs = [V(i) for i in range(3)]
    r = CacheAware(tree_block_tokens=16, seed=2)
    r.index.grow(3)
    for i in (0, 1):
        r.index.insert(i, chain_hashes(P))
    picks = Counter()
    for k in range(200):
        pick = r.route(R(k, ids=P), vs)
        picks[pick] += 1
        r.on_finish(R(k, ids=P), pick)
    assert set(picks) == {0, 1}  # both hold the deepest node: any of them
    r = CacheAware(tree_block_tokens=16, holder="least_load", load="views")
    r.index.grow(3)
    for i in (0, 1):
        r.index.insert(i, chain_hashes(P))
    assert r.route(R(0, ids=P), [V(0, running=3), V(1, running=1), V(2)]) == 1


def test_cache_aware_skips_unhealthy_holder():
    r = CacheAware(tree_block_tokens=16)
    assert r.route(R(0, ids=P), [V(0)]) == 0
    down = [V(0, healthy=False), V(1), V(2)]
    assert r.route(R(1, ids=P), down) in (1, 2)


def test_cache_aware_tree_granularity():
    r = CacheAware(load="views")  # 64-token tree blocks: every 4th 16-token hash
    hs, unit = r.tree_keys(R(0, ids=tuple(range(10))))
    assert unit == 64 and hs == chain_hashes(tuple(range(10)))[3::4]
    vs = [V(0), V(1, running=1)]
    assert r.route(R(0, ids=tuple(range(10))), vs) == 0
    assert r.tree_blocks(0) == 2
    # Shares 8 of 10 blocks = 2 tree blocks = 128 tokens of 160 -> 0.8 > 0.3.
    assert r.route(R(1, ids=(*range(8), 77, 78)), [V(0, running=1), V(1)]) == 0
    assert r.last_reason == "cache"
    short = CacheAware(max_prefix_blocks=2, load="views")
    assert len(short.tree_keys(R(0, ids=tuple(range(40))))[0]) == 2
    # A long prompt is judged on the tracked head: 2 of 2 tree blocks match -> cache.
    assert short.route(R(0, ids=tuple(range(40))), vs) == 0
    assert short.route(R(1, ids=(*range(8), *range(500, 532))), [V(0, running=1), V(1)]) == 0
    assert short.last_reason == "cache"


def test_cache_aware_evicts_on_a_timer_down_to_max_tree_tokens():
    r = CacheAware(tree_block_tokens=16, max_tree_tokens=16 * 20, eviction_interval_s=10.0)
    a, b, c, d = (tuple(range(s, s + 10)) for s in (0, 100, 200, 300))
    for k, (ids, t) in enumerate(((a, 0.0), (b, 1.0), (c, 2.0))):
        r.route(R(k, ids=ids, arrival_s=t), [V(0)])
    assert r.tree_blocks(0) == 30  # over the bound, but no eviction before the interval
    r.route(R(3, ids=d, arrival_s=11.0), [V(0)])  # 11 s after the first: evict
    assert r.tree_blocks(0) == 20
    ha, hb, hc, hd = (chain_hashes(x) for x in (a, b, c, d))
    assert [r.match_blocks(0, h) for h in (ha, hb, hc, hd)] == [0, 0, 10, 10]
    # Without a clock a tree grown past twice its bound is evicted at once.
    r = CacheAware(tree_block_tokens=16, max_tree_tokens=16 * 20)
    for k in range(5):
        r.route(R(k, ids=tuple(range(1000 * k, 1000 * k + 10))), [V(0)])
        assert r.tree_blocks(0) <= 40


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.lists(st.integers(0, 3), min_size=1, max_size=8)),
        min_size=1,
        max_size=40,
    ),
    st.integers(2, 30),
)
def test_prefix_index_stays_prefix_closed_and_match_all_agrees(ops, keep):
    idx = PrefixIndex()
    idx.grow(4)
    paths = []
    for k, (inst, ids) in enumerate(ops):
        hs = chain_hashes(ids)
        paths.append(hs)
        idx.insert(inst, hs)
        if k % 5 == 4:
            idx.evict(inst, keep)
            assert idx.size(inst) <= keep
    for hs in paths:
        want = {i: idx.match(i, hs) for i in range(4) if idx.match(i, hs) > 0}
        assert idx.match_all(hs, 0b1111) == want
        for i in range(4):
            held = [idx.holds(i, h) for h in hs]
            assert held == sorted(held, reverse=True)  # prefix-closed


# --------------------------------------------------------------------------- prefix_load
def test_prefix_load_default_is_llm_d_chart_with_approximate_prefix_from_history():
    r = make_router("prefix_load", {"unit_tokens": 16}, seed=1)  # llm-d's 16-token blocks
    assert r.needs_views and not r.needs_prefix  # it never reads the engine's cache
    (pre, wp), (q, wq), (kv, wk) = r.scorers
    assert isinstance(pre, ApproxPrefixScorer) and (q, kv) == (queue_score, kv_score)
    assert (wp, wq, wk) == (3.0, 2.0, 2.0)
    a = tuple(range(10))
    vs = [V(0, kv_utilization=0.5), V(1, queue_len=2, kv_utilization=0.5), V(2, queue_len=4)]
    # prefix 0 everywhere; queue 2*[1, .5, 0]; kv 2*[.5, .5, 1] -> [3, 2, 2]
    assert r.route(R(0, ids=a), vs) == 0
    vs2 = [
        V(0, queue_len=4, kv_utilization=0.9),
        V(1, kv_utilization=0.5),
        V(2, queue_len=2, kv_utilization=0.5),
    ]
    # B, unrelated: prefix 0; queue 2*[0, 1, .5]; kv 2*[.1, .5, .5] -> [.2, 3, 2]
    assert r.route(R(1, ids=tuple(range(20, 30))), vs2) == 1
    # A again: prefix 3*1 on 0 (sent there before) -> 3.2 > 3: routing history brings it back.
    assert r.route(R(2, ids=a), vs2) == 0
    assert pre(R(3, ids=(*a[:5], 7, 7, 7, 7, 7)), vs2) == [0.5, 0.0, 0.0]  # 5 of 10 blocks


def test_prefix_load_queue_scorer_counts_waiting_requests_only():
    r = make_router("prefix_load")
    vs = [V(0, running=50, kv_utilization=0.2), V(1, running=0, kv_utilization=0.3)]
    assert r.route(R(0, ids=(1, 2)), vs) == 0  # running requests are not queue


def test_prefix_load_precise_is_llm_d_precise_config():
    r = make_router("prefix_load_precise")
    assert r.needs_prefix and r.needs_views
    assert [w for _, w in r.scorers] == [2.0, 1.0, 1.0]
    pre = r.scorers[0][0]
    # 64-token blocks: a 160-token prompt has 2; 100 cached tokens = 1 block, 128 = 2.
    vs = [V(0, cached_prefix_tokens=100), V(1, cached_prefix_tokens=128), V(2)]
    assert pre(R(prompt=160), vs) == [0.5, 1.0, 0.0]
    vs = [V(0, cached_prefix_tokens=128, queue_len=3), V(1, queue_len=0, kv_utilization=0.1)]
    # 0: 2*1 + 1*1 + 0 = 3; 1: 0 + 0.9 + 1 = 1.9
    assert r.route(R(prompt=160), vs) == 0


def test_approx_prefix_scorer_lru_is_the_engines_kv_size():
    s = ApproxPrefixScorer(max_prefix_tokens=16 * 4, unit_tokens=16)
    vs = [V(0, total_blocks=10), V(1, total_blocks=10)]
    ids = tuple(range(8))
    assert s(R(0, ids=ids), vs) == [0.0, 0.0]
    s.picked(R(0, ids=ids), vs[0])
    assert s.index.size(0) == 4  # only the first 4 blocks (64 tokens) are tracked
    assert s(R(1, ids=(*ids[:2], 50, 51)), vs) == [0.5, 0.0]
    for k in range(5):  # 5 more distinct 4-block prompts: over 10 blocks -> LRU eviction
        s.picked(R(2 + k, ids=tuple(range(100 * k + 100, 100 * k + 104))), vs[0])
        assert s.index.size(0) <= 10
    assert s(R(9, ids=ids), vs) == [0.0, 0.0]  # the oldest prompt was evicted
    coarse = ApproxPrefixScorer()  # default: 64-token units, 4096 tokens tracked
    coarse.picked(R(20, ids=tuple(range(10))), vs[1])  # 160 tokens: 2 units held
    assert coarse.index.size(1) == 2
    assert coarse(R(21, ids=tuple(range(10))), vs) == [0.0, 2 / 3]  # of ceil(160 / 64)


# -------------------------------------------------------------------------------- ledger
@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["dispatch", "first", "finish"]),
            st.integers(0, 11),  # request id
            st.integers(0, 3),  # instance
            st.lists(st.integers(0, 2), min_size=0, max_size=6),  # prompt blocks
            st.integers(0, 15),  # un-hashed tail tokens
        ),
        max_size=60,
    )
)
def test_ledger_matches_a_brute_force_recount(ops):
    """Whatever order dispatches, first tokens and finishes come in (repeats included), the
    ledger equals a recount of the requests still outstanding."""
    led = Ledger(track_blocks=True, unit_tokens=16)
    led.grow(4)
    live: dict[int, tuple[int, RequestView, bool]] = {}  # id -> (index, request, prefilled)
    for op, rid, inst, ids, tail in ops:
        q = R(rid, ids=tuple(ids), prompt=16 * len(ids) + tail)
        if op == "dispatch":
            led.dispatch(q, inst, prefill_tokens=q.prompt_tokens // 2)
            live[rid] = (inst, q, False)
        elif op == "first":
            led.first_token(q)
            if rid in live:
                live[rid] = (live[rid][0], live[rid][1], True)
        else:
            led.finish(q)
            live.pop(rid, None)
        for i in range(4):
            mine = [(r, pre) for ix, r, pre in live.values() if ix == i]
            assert led.requests[i] == len(mine)
            assert led.prefill_tokens[i] == sum(r.prompt_tokens // 2 for r, p in mine if not p)
            assert led.unprefilled_tokens[i] == sum(r.prompt_tokens for r, p in mine if not p)
            unique = {h for r, _ in mine for h in r.block_hashes}
            tails = sum(r.prompt_tokens - 16 * len(r.block_hashes) for r, _ in mine)
            assert led.active_tokens[i] == 16 * len(unique) + tails
        for r in [q, R(99, ids=(0, 1, 2, 0))]:
            want = {}
            for i in range(4):
                held = {h for ix, x, _ in live.values() if ix == i for h in x.block_hashes}
                k = 0
                while k < len(r.block_hashes) and r.block_hashes[k] in held:
                    k += 1
                if k:
                    want[i] = k
            assert led.active_prefix(r.block_hashes, 0b1111) == want
    assert len(led) == len(live)


def test_ledger_deduplicates_in_64_token_units_by_default():
    led = Ledger(track_blocks=True)
    led.dispatch(R(0, ids=tuple(range(10))), 0)  # 160 tokens: 2 units of 64 + 32
    assert led.active_tokens[0] == 128 + 32
    led.dispatch(R(1, ids=(*range(8), 50, 51)), 0)  # shares the 2 units (8 blocks)
    assert led.active_tokens[0] == 128 + 32 + 32
    led.finish(R(0))
    assert led.active_tokens[0] == 128 + 32
    led.finish(R(1))
    assert led.active_tokens[0] == 0


# ---------------------------------------------------------------------------- kv_overlap
def test_kv_overlap_defaults_are_dynamos():
    r = KVOverlap()
    assert (r.overlap_score_credit, r.prefill_load_scale, r.temperature) == (1.0, 1.0, 0.0)
    assert (r.overlap_score_credit_decay, r.decode_active_request_weight) == (0.0, 0.0)
    assert KVOverlap(overlap_weight=0.0).overlap_score_credit == 0.0  # deprecated alias
    with pytest.raises(InputError, match="overlap_score_credit"):
        KVOverlap(overlap_score_credit=2.0)


def test_kv_overlap_counts_routed_prefill_and_active_blocks_router_side():
    """Dynamo's cost with its router-side terms, by hand. Prompts are 10 blocks of 16."""
    r = KVOverlap(seed=1, active_unit_tokens=16)  # Dynamo's exact rule: 16-token blocks
    a, b, c = tuple(range(10)), tuple(range(100, 110)), tuple(range(200, 210))
    vs = [V(0), V(1, cached_prefix_tokens=128), V(2, cached_prefix_tokens=160)]
    # Empty ledger: max(0, 160/16 - overlap) + (0 active + 10 new blocks).
    assert r.costs(R(0, ids=a), vs) == pytest.approx([20, 12, 10])
    assert r.route(R(0, ids=a), vs) == 2  # charged 160 - 10*16 = 0 prefill tokens
    led = r.ledger
    assert (led.requests[2], led.prefill_tokens[2], led.active_tokens[2]) == (1, 0, 160)
    # The same prompt again: its blocks are already active on 2 (counted once).
    assert r.costs(R(1, ids=a), vs) == pytest.approx([20, 12, 10])
    cold = [V(0), V(1), V(2)]
    # Another prompt, nothing cached: 2 carries 10 active blocks -> [20, 20, 30].
    assert r.costs(R(2, ids=b), cold) == pytest.approx([20, 20, 30])
    x = r.route(R(2, ids=b), cold)
    assert x in (0, 1) and led.prefill_tokens[x] == 160
    y = 1 - x
    # Its 160 prefill tokens stay charged until its first token: x costs (160+160)/16 + 20.
    assert r.costs(R(3, ids=c), cold) == pytest.approx(
        [40 if i == x else (20 if i == y else 30) for i in range(3)]
    )
    r.on_first_token(R(2, ids=b), x)
    assert led.prefill_tokens[x] == 0 and led.active_tokens[x] == 160
    assert r.costs(R(3, ids=c), cold)[x] == pytest.approx(30)  # blocks stay until finish
    r.on_first_token(R(2, ids=b), x)  # a repeated notification changes nothing
    r.on_finish(R(2, ids=b), x)
    r.on_finish(R(0, ids=a), 2)
    assert led.requests == [0, 0, 0] and led.active_tokens == [0, 0, 0]
    assert led.prefill_tokens == [0, 0, 0]


def test_kv_overlap_credit_decay_trades_locality_for_prefill_balance():
    r = KVOverlap(overlap_score_credit_decay=1.0, active_unit_tokens=16)
    r.ledger.dispatch(R(90, ids=tuple(range(500, 520))), 1)  # 320 tokens of prefill on 1
    vs = [V(0, cached_prefix_tokens=160), V(1, cached_prefix_tokens=160)]
    q = R(0, ids=tuple(range(10)))  # 10 blocks, all cached on both
    # Decay on 1 = 1 / (1 + 1 * (20 excess blocks) / 10) = 1/3: prefill 30 - 10/3.
    assert r.costs(q, vs) == pytest.approx([0 + 10, 30 - 10 / 3 + 20 + 10])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 3), min_size=1, max_size=8),  # prompt blocks
            st.integers(0, 5),  # cached blocks
            st.sampled_from(["keep", "first", "finish"]),
        ),
        min_size=1,
        max_size=25,
    ),
    st.floats(0, 1),
    st.floats(0, 3),
    st.floats(0, 2),
)
def test_kv_overlap_costs_equal_dynamos_formula_on_the_ledger(ops, credit, scale, wreq):
    """The incremental cost equals the formula evaluated from the ledger's state."""
    r = KVOverlap(
        seed=3,
        overlap_score_credit=credit,
        prefill_load_scale=scale,
        decode_active_request_weight=wreq,
        active_unit_tokens=16,
    )
    led = r.ledger
    for k, (ids, cached, then) in enumerate(ops):
        q = R(k, ids=tuple(ids), prompt=16 * len(ids) + k % 5)
        vs = [V(i, cached_prefix_tokens=16 * ((cached + i) % 6)) for i in range(4)]
        got = r.costs(q, vs)
        want = []
        for v in vs:
            i = v.index
            ov = min(v.cached_prefix_tokens // 16, -(-q.prompt_tokens // 16))
            prefill = max((led.prefill_tokens[i] + q.prompt_tokens) / 16 - credit * ov, 0.0)
            held = led.active_prefix(q.block_hashes, 1 << i).get(i, 0)
            new = q.prompt_tokens - held * 16
            decode = (led.active_tokens[i] + new) / 16
            want.append(scale * prefill + decode + wreq * led.requests[i])
        assert got == pytest.approx(want)
        pick = r.route(q, vs)
        if then == "first":
            r.on_first_token(q, pick)
        elif then == "finish":
            r.on_finish(q, pick)


def test_kv_overlap_a_burst_onto_an_idle_fleet_spreads():
    """The herding the review found: equal costs went to the lowest index. Router-side
    accounting charges each pick at once, and ties break at random."""
    r = KVOverlap(seed=2)
    vs = [V(i) for i in range(8)]
    picks = [r.route(R(k, ids=(k, k + 1)), vs) for k in range(16)]
    assert sorted(Counter(picks).values()) == [2] * 8


def test_kv_overlap_temperature_samples_softmax():
    vs = [V(0), V(1, cached_prefix_tokens=160)]  # costs 20 and 10
    q = R(0, ids=tuple(range(10)))
    cold = KVOverlap(temperature=0.0)
    for _ in range(20):
        assert cold.route(q, vs) == 1
        cold.on_finish(q, 1)
    warm = KVOverlap(temperature=1.0, seed=1)
    c = Counter()
    for k in range(4000):
        pick = warm.route(R(k, ids=tuple(range(10))), vs)
        warm.on_finish(R(k), pick)
        c[pick] += 1
    # Normalised costs 1 and 0: p(0) = e^-1 / (1 + e^-1) ~ 0.269.
    assert 0.24 < c[0] / 4000 < 0.30
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
        ka, kb = ((r.predict_ttft_s(q, v), v.outstanding) for v in (a, b))
        if ka != kb:
            assert pick == (a if ka < kb else b).index
        seen.update((a.index, b.index))
    assert len(seen) == 8  # distinct prefixes spread their candidates over the fleet


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


def Rc(k: int, ids: tuple[int, ...], **kw: object) -> RequestView:
    """A request of 64-token hash blocks (the prefix key's unit)."""
    return R(k, ids=ids, prompt=64 * len(ids), hash_block_tokens=64, **kw)


def conversations(n: int, shared: tuple[int, ...] = (0,)) -> list[list[RequestView]]:
    """``n`` conversations after a shared system prompt; turn t extends turn t-1."""
    out = []
    for c in range(n):
        own = tuple(range(1000 * (c + 1), 1000 * (c + 1) + 6))
        out.append([Rc(10 * c + t, (*shared, *own[: 2 + 2 * t])) for t in range(3)])
    return out


@pytest.mark.parametrize("shared", [(0,), (0, 1, 2)])
def test_prefix_key_is_adaptive_past_a_shared_system_prompt(shared):
    """Mooncake's conversation trace: one first block for every request. The key must tell
    conversations apart and keep one key per conversation across its turns."""
    key = PrefixKey()
    convs = conversations(60, shared)
    for conv in convs:  # the first turns teach where prompts branch
        key(conv[0])
    keys = [[key(turn) for turn in conv] for conv in convs]
    assert all(len(set(k)) == 1 for k in keys[1:])  # every turn keeps its conversation's key
    assert len({k[0] for k in keys}) == 60  # and conversations are told apart
    assert key.depth(convs[5][2]) == 64 * (len(shared) + 1)  # system prompt + one block
    fixed = PrefixKey(key_tokens=64 * len(shared))
    assert len({fixed(conv[0]) for conv in convs}) == 1  # a key inside the shared prompt
    fixed = PrefixKey(key_tokens=64 * (len(shared) + 1))
    assert len({fixed(conv[0]) for conv in convs}) == 60
    with pytest.raises(InputError):
        PrefixKey(key_tokens=0)


@pytest.mark.parametrize("name", ["dualmap", "consistent_hash"])
def test_prefix_routers_spread_conversations_sharing_a_first_block(name):
    vs = [V(i) for i in range(8)]
    r = make_router(name, {"load_factor": None} if name == "consistent_hash" else {}, seed=4)
    convs = conversations(80)
    for conv in convs[:20]:  # warm-up: learn where prompts branch
        r.route(conv[0], vs)
    firsts = [r.route(conv[0], vs) for conv in convs[20:]]
    assert len(set(firsts)) >= 6  # spread over the fleet, not two candidates for everyone
    for conv in convs[20:30]:
        picks = {r.route(turn, vs) for turn in conv}
        if name == "consistent_hash":
            assert len(picks) == 1  # every turn to its conversation's owner
        else:
            assert len(picks) <= 2  # one of the conversation's two candidates
            assert r.candidates(conv[0], vs) == r.candidates(conv[2], vs)


# ------------------------------------------------------------------------------- llumnix
def test_llumnix_dispatch_maximises_remaining_steps():
    r = Llumnix()
    assert (r.migrate_out_threshold, r.migration_interval_s) == (-3.0, 0.05)
    vs = [
        V(0, free_blocks=500, running=10),  # 500 / 10 = 50
        V(1, free_blocks=300, running=2),  # 150
        V(2, free_blocks=900, running=6, queue_len=2),  # 112.5
        V(3, free_blocks=2000, running=1, healthy=False),
    ]
    assert [r.remaining_steps(v) for v in vs[:3]] == [50.0, 150.0, 112.5]
    assert r.route(R(0, prompt=160), vs) == 1
    # Waiting demand from the router's own ledger: 160 prompt tokens = 10 blocks sent to 1
    # whose first token has not come back.
    v1 = V(1, free_blocks=300, running=2, queue_len=1)
    assert r.remaining_steps(v1) == (300 - 10) / 3
    r.on_first_token(R(0, prompt=160), 1)
    assert r.remaining_steps(v1) == 100.0
    assert r.remaining_steps(V(4, free_blocks=7)) == math.inf  # idle
    r.on_finish(R(0, prompt=160), 1)
    assert r.ledger.requests[1] == 0


def test_llumnix_migrates_from_low_remaining_steps_and_preempting_instances():
    r = Llumnix(seed=3)
    r.ledger.dispatch(R(100, prompt=1600), 0)  # 100 blocks waiting on instance 0
    vs = [
        V(0, free_blocks=20, running=3, queue_len=1),  # (20 - 100) / 4 = -20 <= -3: source
        V(1, free_blocks=1000, running=2),  # 500
        V(2, free_blocks=50, running=5),  # 10
        V(3, free_blocks=5, running=2, preemptions=7),  # 2.5; its counter seen first now
        V(4, free_blocks=0),  # idle: infinite
        V(5, free_blocks=5000, running=1, healthy=False),  # never paired
    ]
    assert r.plan_migrations(vs) == [(0, 4)]
    vs[3] = V(3, free_blocks=5, running=2, preemptions=9)  # it preempted since: a source
    assert r.plan_migrations(vs) == [(0, 4), (3, 1)]
    assert r.plan_migrations(vs) == [(0, 4)]  # no new preemption
    assert Llumnix(migrate_out_threshold=100.0).plan_migrations(vs[1:3]) == [(2, 1)]
    assert Llumnix(migrate=False).plan_migrations(vs) == []


# ---------------------------------------------------------------------- session_affinity
def test_session_affinity_pins_and_steals():
    r = SessionAffinity(steal_bound=2.0)
    vs = [V(0, running=3), V(1, running=1), V(2, running=2), V(3, running=2)]
    assert r.route(R(0, session_id="a"), vs) == 1  # first call: least loaded
    assert r.pinned("a") == 1
    later = [V(0, running=1), V(1, running=4), V(2, running=2), V(3, running=2)]
    assert r.route(R(1, session_id="a"), later) == 1  # 4 <= 2 * 2.25: stays
    hot = [V(0, running=1), V(1, running=12), V(2, running=2), V(3, running=1)]
    new = r.route(R(2, session_id="a"), hot)  # 12 > 2 * 4: stolen to least loaded
    assert new in (0, 3) and r.pinned("a") == new and r.steals == 1
    assert r.route(R(3, session_id="a"), later) == new  # the new pin holds
    assert r.route(R(4), later) == 0  # no session: least loaded
    down = [V(i, healthy=i != new, running=(4, 4, 2, 3)[i]) for i in range(4)]
    assert r.route(R(5, session_id="a"), down) == 2  # pinned instance down: re-pin


def test_session_affinity_low_load_does_not_steal():
    r = SessionAffinity(steal_bound=2.0)
    vs = [V(i) for i in range(4)]
    pin = r.route(R(0, session_id="x"), vs)
    after = [V(i, running=2 if i == pin else 0) for i in range(4)]
    assert r.route(R(1, session_id="x"), after) == pin  # 2 <= 2 * max(0.5, 1)


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
