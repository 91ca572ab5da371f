"""Model routers (quality_first, route_balance, green_bandit): hand-checked decisions, the
router-side ledger taken in route and released on every path, seeded random ties, and the
bandit's LinUCB algebra against the closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.conftest import RV, V

from fleetsched.core.views import Outcome, RequestView
from fleetsched.errors import InputError
from fleetsched.perf import get_model
from fleetsched.policies.routing import make_router
from fleetsched.policies.routing.green_bandit import GreenBandit
from fleetsched.policies.routing.quality_first import QualityFirst
from fleetsched.policies.routing.route_balance import RouteBalance

S, L = "Llama-3.1-8B", "Llama-3.1-70B"


def R(i: int, task: str | None = "knowledge", prompt: int = 512, **kw: object) -> RequestView:
    d: dict[str, object] = dict(prompt_tokens=prompt, task_class=task)
    d.update(kw)
    return RV(i, **d)


def fleet() -> list:
    """Two small-model instances (0, 1) and one large-model instance (2), all on H100s."""
    return [
        V(0, model=S, gpu="H100-SXM"),
        V(1, model=S, gpu="H100-SXM"),
        V(2, model=L, gpu="H100-SXM"),
    ]


# ------------------------------------------------------------------------ quality_first
def test_quality_first_ignores_load() -> None:
    r = QualityFirst(seed=0)
    views = fleet()
    # Llama-3.1-70B beats 8B on every default task class: all go to instance 2, however many
    # the router already sent there (the serial baseline's defect).
    assert [r.route(R(i), views) for i in range(20)] == [2] * 20
    assert r.ledger.requests[2] == 20


def test_quality_first_least_loaded_within_the_model_and_without_a_task() -> None:
    r = QualityFirst(seed=0, quality={"chat": {S: 0.9, L: 0.5}})
    views = fleet()
    a = r.route(R(0, "chat"), views)
    b = r.route(R(1, "chat"), views)
    assert {a, b} == {0, 1}  # the small model wins; its second request avoids the busy one
    # No task class: the least loaded instance of any model, instance 2 (0 and 1 hold one).
    assert r.route(R(2, None), views) == 2


def test_quality_first_ties_are_random_and_seeded() -> None:
    firsts = {
        QualityFirst(seed=s, quality={"t": {S: 0.7, L: 0.5}}).route(R(0, "t"), fleet())
        for s in range(16)
    }
    assert firsts == {0, 1}  # never always the lowest index
    a = [
        QualityFirst(seed=3, quality={"t": {S: 0.7, L: 0.5}}).route(R(0, "t"), fleet())
        for _ in range(3)
    ]
    assert len(set(a)) == 1  # same seed, same choice


def test_quality_first_ledger_released_on_every_path() -> None:
    r = QualityFirst(seed=0)
    views = fleet()
    reqs = [R(i) for i in range(5)]
    for q in reqs:
        r.route(q, views)
    r.on_first_token(reqs[0], 2)
    assert r.ledger.prefill_tokens[2] == 4 * 512
    for q in reqs:
        r.on_finish(q, 2)
    r.on_finish(reqs[0], 2)  # reported twice: no drift
    assert r.ledger.requests[2] == 0 and r.ledger.prefill_tokens[2] == 0 and len(r.ledger) == 0


def test_quality_first_unknown_pair_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no quality for task class 'poetry'"):
        QualityFirst().route(R(0, "poetry"), fleet())


# ------------------------------------------------------------------------ route_balance
def test_route_balance_quality_only_scores_are_the_table() -> None:
    r = RouteBalance(w_quality=1, w_cost=0, w_latency=0, w_balance=0)
    assert r.scores(R(0), fleet()) == pytest.approx([0.694, 0.694, 0.836])
    assert r.route(R(0), fleet()) == 2


def test_route_balance_cost_only_prefers_the_small_model_by_its_size_ratio() -> None:
    r = RouteBalance(w_quality=0, w_cost=1, w_latency=0, w_balance=0)
    ratio = get_model(S).active_params / get_model(L).active_params
    s = r.scores(R(0), fleet())
    # cost = tokens x size: 1 - cost/max = 1 - size_8B/size_70B on the small model, 0 on the big.
    assert s == pytest.approx([1 - ratio, 1 - ratio, 0.0], abs=1e-6)
    assert r.route(R(0), fleet()) in (0, 1)


def test_route_balance_latency_counts_what_it_sent() -> None:
    r = RouteBalance(seed=1, w_quality=0, w_cost=0, w_latency=1, w_balance=0)
    views = [V(0, model=S, gpu="H100-SXM"), V(1, model=S, gpu="H100-SXM")]
    first = r.route(R(0, prompt=4000), views)
    # The first request is still in flight where it went: the next goes to the other one.
    assert r.route(R(1, prompt=4000), views) == 1 - first
    r.on_finish(R(0, prompt=4000), first)
    r.on_finish(R(1, prompt=4000), 1 - first)
    assert r.ledger.requests == [0, 0] and r.ledger.prefill_tokens == [0, 0]


def test_route_balance_balance_term_reads_kv_use() -> None:
    r = RouteBalance(w_quality=0, w_cost=0, w_latency=0, w_balance=1)
    views = [V(0, model=S, kv_utilization=0.5), V(1, model=S, kv_utilization=0.0)]
    # Utilisation after the request: 0.5 + 768 / 16000 and 0 + 768 / 16000 (1000 blocks).
    u0, u1 = 0.5 + 768 / 16000, 768 / 16000
    assert r.scores(R(0), views) == pytest.approx([1 - u0 / u0, 1 - u1 / u0], abs=1e-6)
    assert r.route(R(0), views) == 1


def test_route_balance_holds_under_load_where_quality_first_piles_up() -> None:
    """Under a burst the fused score spills to the small model once the large one's
    predicted latency outweighs its quality edge; quality-first never does. (Cost off: with
    the default weights the 70B model's 9x price keeps most requests on the 8B one.)"""
    views = fleet()
    fused = RouteBalance(
        seed=0, w_quality=0.4, w_cost=0, w_latency=0.6, w_balance=0, quality_norm="minmax"
    )
    serial = QualityFirst(seed=0)
    f = [fused.route(R(i, prompt=2000), views) for i in range(40)]
    s = [serial.route(R(i, prompt=2000), views) for i in range(40)]
    assert set(s) == {2}
    assert f[:8] == [2] * 8 and {0, 1} <= set(f[8:])


def test_route_balance_bad_parameters() -> None:
    with pytest.raises(InputError, match="weights"):
        RouteBalance(w_quality=-1)
    with pytest.raises(InputError, match="quality_norm"):
        RouteBalance(quality_norm="z")
    with pytest.raises(InputError):
        make_router("route_balance", {"w_speed": 1})


# ------------------------------------------------------------------------ green_bandit
def test_linucb_update_matches_the_closed_form() -> None:
    g = GreenBandit(seed=0, alpha=0.0, reg=0.05)
    views = [V(0, model=S, gpu="H100-SXM"), V(1, model=L, gpu="H100-SXM")]
    req = R(0, "math", difficulty=0.9)
    x = g.context(req)
    assert x.sum() == 3  # task one-hot, difficulty bin one-hot, bias
    assert x[-1] == 1 and x[len(g._task_slot) + 1 + 2] == 1  # difficulty 0.9: third bin
    i = g.route(req, views)
    model = views[i].model
    # The first outcome: energy span 0, so reward = 0.5 * correct + 0.5 * (1 - 0) = 1.
    g.on_outcome(req, i, Outcome(correct=1.0, energy_j=10.0, output_tokens=10, e2e_s=1.0))
    # A = reg I + x x^T, b = x: theta.x = |x|^2 / (reg + |x|^2) (Sherman-Morrison).
    assert g.ucb(model, x) == pytest.approx(3 / (0.05 + 3))
    other = L if model == S else S
    assert g.ucb(other, x) == 0.0
    assert g.route(R(1, "math", difficulty=0.9), views) == i  # exploits the rewarded arm
    # The inverse kept equals the inverse of A computed directly.
    a_inv, _ = g._arms[model]
    np.testing.assert_allclose(a_inv, np.linalg.inv(0.05 * np.eye(len(x)) + np.outer(x, x)))


def test_bandit_reward_normalises_energy_over_what_it_has_seen() -> None:
    g = GreenBandit(seed=0, alpha=0.0, energy_weight=1.0)
    views = [V(0, model=S, gpu="H100-SXM")]
    reqs = [R(i, "code") for i in range(3)]
    for q in reqs:
        g.route(q, views)
    g.on_outcome(reqs[0], 0, Outcome(1.0, 100.0, 10, 1.0))  # 10 J/token: reward 1 (span 0)
    g.on_outcome(reqs[1], 0, Outcome(1.0, 300.0, 10, 1.0))  # 30 J/token: the max, reward 0
    _, b = g._arms[S]
    x = g.context(reqs[0])
    np.testing.assert_allclose(b, 1.0 * x + 0.0 * x)
    g.on_outcome(reqs[2], 0, Outcome(math.nan, 1.0, 10, 1.0))  # unjudged: no update
    np.testing.assert_allclose(g._arms[S][1], x)


def test_bandit_feasibility_filter_and_fallback() -> None:
    views = fleet()
    # 70B on one H100 (assumed TP 4 -> still slower): with a bound between the two models'
    # idle latency only the small model is feasible.
    g = GreenBandit(seed=0, max_latency_s=1e-9)
    assert g.route(R(0), views) in (0, 1, 2)  # nothing feasible: all models stay in
    from fleetsched.policies.routing._models import predicted_latency_s

    t_small = predicted_latency_s(views[0], R(0), 0, 0, 256)
    t_large = predicted_latency_s(views[2], R(0), 0, 0, 256)
    assert t_small < t_large
    g = GreenBandit(seed=0, max_latency_s=(t_small + t_large) / 2)
    assert {g.route(R(i), views) for i in range(10)} <= {0, 1}


def test_bandit_learns_in_simulation_to_trade_accuracy_for_energy() -> None:
    """A task the 70B model answers far better (0.95 vs 0.2): energy_weight 0 (accuracy only)
    learns to send it there; energy_weight 1 (energy only) learns the 8B model, which takes
    fewer joules per token."""
    from fleetsched.core.config import Scenario
    from fleetsched.sim.run import simulate

    def run(lam: float) -> tuple[dict[str, int], dict]:
        sc = Scenario.model_validate(
            {
                "seed": 1,
                "cluster": [
                    {"name": "s", "gpu": "H100-SXM", "model": S, "count": 1},
                    {"name": "l", "gpu": "H100-SXM", "model": L, "tp": 4, "count": 1},
                ],
                "workload": {
                    "synthetic": {
                        "num_requests": 300,
                        "arrival": {"rate": 2.0},
                        "prompt": {"kind": "fixed", "value": 256},
                        "output": {"kind": "fixed", "value": 32},
                        "tasks": [{"name": "t"}],
                    }
                },
                "quality": {"t": {S: 0.2, L: 0.95}},
                "policies": {
                    "router": {
                        "name": "green_bandit",
                        "params": {"energy_weight": lam, "alpha": 0.5},
                    }
                },
            }
        )
        res = simulate(sc)
        n = {S: 0, L: 0}
        for rec in res.records:
            n[[S, L][rec.instance]] += 1
        return n, res.summary

    (acc, sa), (green, sg) = run(0.0), run(1.0)
    assert acc[L] > 0.9 * 300 and green[S] > 0.9 * 300
    assert sa["accuracy"] > 0.9 > 0.3 > sg["accuracy"]
    assert sg["energy_per_request_j"] < 0.5 * sa["energy_per_request_j"]
