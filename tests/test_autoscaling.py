"""Autoscaling: the simulator's changing fleet and the policies' decisions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from tests.conftest import V

from fleetsched.cli.options import default_scenario
from fleetsched.core.config import apply_overrides
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.metrics.summary import summary_to_json
from fleetsched.perf import get_model
from fleetsched.policies.autoscaling import FleetView, make_autoscaler
from fleetsched.policies.autoscaling.predictive import Predictive
from fleetsched.policies.autoscaling.qlearning import QLearning
from fleetsched.policies.autoscaling.reactive import Reactive
from fleetsched.policies.routing import ROUTERS


def bursty(policy: str, params: dict | None = None, auto: dict | None = None, **over):
    """On/off traffic (60 s at 30 req/s, 60 s at 3 req/s) on 2 H100s, scaled 1..8."""
    ov = {
        "workload.synthetic.sessions.turns_mean": 1,
        "workload.synthetic.num_requests": 1500,
        "workload.synthetic.arrival": {
            "kind": "bursty",
            "rate": 30.0,
            "on_s": 40,
            "off_s": 40,
            "off_rate_factor": 0.1,
        },
        "cluster.0.count": 2,
        "autoscaling": {
            "policy": {"name": policy, "params": params or {}},
            "max_replicas": 8,
            "startup_s": 5,
            "scale_down_cooldown_s": 10,
            **(auto or {}),
        },
    }
    ov.update(over)
    return apply_overrides(default_scenario(), ov)


def run(sc, **kw):
    from fleetsched.sim.run import simulate

    return simulate(sc, **kw)


def test_static_fleet_gpu_seconds_by_hand() -> None:
    r = run(bursty("static", **{"cluster.0.tp": 2}))
    recs = r.records
    span = max(x.finish_s for x in recs) - min(x.arrival_s for x in recs)
    a = r.summary["autoscaling"]
    assert a["gpu_seconds"] == pytest.approx(2 * 2 * span)
    assert a["scale_ups"] == a["scale_downs"] == 0 and a["replicas_mean"] == pytest.approx(2)


def test_scale_up_waits_the_load_delay_and_drained_replicas_finish_their_requests() -> None:
    sc = bursty("reactive", {"target": 8, "stable_window_s": 20})
    r = run(sc)
    c = r.autoscaler
    assert c is not None and r.summary["completed"] == 1500
    kinds = [k for _, k, _ in c.events]
    assert "ready" in kinds and "drain" in kinds and "stop" in kinds
    load = 5 + get_model("Llama-3.1-8B").weight_bytes / 2e9
    assert c.load_s == pytest.approx(load)
    ups = [t for t, k, _ in c.events if k == "up"]
    readies = {i: t for t, k, i in c.events if k == "ready"}
    drains = {i: t for t, k, i in c.events if k == "drain"}
    stops = {i: t for t, k, i in c.events if k == "stop"}
    # Every replica became ready exactly the load delay after some scale-up decision.
    for t in readies.values():
        assert any(math.isclose(t - u, load) for u in ups)
    for i, t_ready in readies.items():
        mine = [x for x in r.records if x.instance == i]
        assert all(x.dispatch_s >= t_ready for x in mine)  # nothing before it was ready
    for i, t_drain in drains.items():
        mine = [x for x in r.records if x.instance == i]
        assert all(x.dispatch_s <= t_drain for x in mine)  # nothing new once draining
        assert all(not math.isnan(x.finish_s) for x in mine)  # it finished all it held
        last = max((x.finish_s for x in mine), default=t_drain)
        assert stops[i] == pytest.approx(max(last, t_drain))  # and released its GPUs then


def test_gpu_seconds_match_the_replica_lifetimes() -> None:
    r = run(bursty("reactive", {"target": 8, "stable_window_s": 20}))
    c = r.autoscaler
    end = max(x.finish_s for x in r.records)
    t0 = min(x.arrival_s for x in r.records)
    start = {0: t0, 1: t0}
    ups = sorted(t for t, k, _ in c.events if k == "up")
    cancels = [t for t, k, _ in c.events if k == "cancel"]
    readies = sorted((t, i) for t, k, i in c.events if k == "ready")
    # Replicas become ready in decision order (equal delays), minus cancelled ones (newest).
    stops = {i: t for t, k, i in c.events if k == "stop"}
    total = 0.0
    uncancelled = list(ups)
    for tc in cancels:  # a cancel drops the newest pending decision before it
        pend = [
            u
            for u in uncancelled
            if u <= tc and not any(math.isclose(u + c.load_s, t) for t, _ in readies if t <= tc)
        ]
        uncancelled.remove(max(pend))
        total += tc - max(pend)
    pending = sorted(uncancelled)
    for (_t, i), u in zip(readies, pending, strict=False):
        start[i] = u
    for i, s0 in start.items():
        total += stops.get(i, end) - s0
    for u in pending[len(readies) :]:
        total += end - u  # still starting at the end
    assert c.gpu_seconds == pytest.approx(total)


def test_cooldown_spaces_scale_downs() -> None:
    r = run(bursty("reactive", {"target": 8, "stable_window_s": 20}))
    c = r.autoscaler
    acts = sorted({t for t, k, _ in c.events if k in ("up", "cancel", "drain")})
    downs = sorted({t for t, k, _ in c.events if k in ("cancel", "drain")})
    assert downs
    for t in downs:
        before = [a for a in acts if a < t]
        assert not before or t - before[-1] >= 10 - 1e-9


class Spy:
    """A router that checks it only ever sees routable instances, then defers to ``inner``."""

    def __init__(self, inner, holder) -> None:
        self.inner = inner
        self.holder = holder
        self.needs_views = True
        self.needs_prefix = inner.needs_prefix
        self.seen: set[int] = set()

    def route(self, req: RequestView, views: Sequence[InstanceView]) -> int:
        sim = self.holder["sim"]
        assert sorted(v.index for v in views) == sim.routable
        self.seen.update(v.index for v in views)
        i = self.inner.route(req, views)
        assert i in sim.routable
        return i

    def on_finish(self, req: RequestView, index: int) -> None:
        self.inner.on_finish(req, index)


@pytest.mark.parametrize("name", sorted(set(ROUTERS) - {"pd_disagg", "profile"}))
def test_every_router_sees_only_live_replicas(name: str, monkeypatch) -> None:
    from fleetsched.sim import kernel
    from fleetsched.sim import run as run_mod

    holder: dict = {}
    real_make = run_mod.make_router

    def make(n, params=None, seed=0, **kw):
        return Spy(real_make(n, params, seed, **kw), holder)

    class Sim(kernel.Simulator):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            holder["sim"] = self

    monkeypatch.setattr(run_mod, "make_router", make)
    monkeypatch.setattr(run_mod, "Simulator", Sim)
    sc = bursty(
        "reactive",
        {"target": 6, "stable_window_s": 12},
        {"startup_s": 0, "load_gb_s": 16},
        router=name,
        **{"workload.synthetic.num_requests": 500, "view_refresh_s": 0.5},
    )
    r = run(sc)
    assert r.summary["completed"] == 500
    spy = holder["sim"].router
    assert max(spy.seen) >= 2  # added replicas were routed to


def test_same_seed_same_autoscaled_run() -> None:
    a = run(bursty("qlearning", {"epsilon": 0.3, "learning": True}))
    b = run(bursty("qlearning", {"epsilon": 0.3, "learning": True}))
    for s in (a.summary, b.summary):
        s.pop("wall_s")
    assert summary_to_json(a.summary) == summary_to_json(b.summary)


def fv(**kw) -> FleetView:
    d = dict(
        now=0.0,
        interval_s=2.0,
        ready=[V(0), V(1)],
        starting=0,
        draining=0,
        arrivals=0,
        arrival_prompt_tokens=0,
        finished=0,
        finished_met_slo=0,
        replica_decode_tokens_s=1000.0,
        mean_output_tokens=100.0,
        min_replicas=1,
        max_replicas=100,
    )
    d.update(kw)
    return FleetView(**d)


def busy(n: int, each: int) -> list[InstanceView]:
    return [V(i, running=each) for i in range(n)]


def test_reactive_is_knative_kpa_by_hand() -> None:
    p = Reactive(target=10, stable_window_s=60, interval_s=2)
    # 100 in flight on 2 replicas: stable = panic = 100 -> 10 pods; 10 / 2 >= 200 %: panic.
    assert p.desired(fv(now=0, ready=busy(2, 50))) == 10
    # Load gone: stable mean 50 -> 5, panic mean (6 s window) 50 -> 5; in panic no decrease.
    assert p.desired(fv(now=2, ready=busy(10, 0))) == 10
    # Panic ends one stable window after the last over-threshold tick (t=0), at t > 60;
    # by t=62 the stable window (samples after t=2) holds only zeros.
    for t in range(4, 62, 2):
        assert p.desired(fv(now=t, ready=busy(10, 0))) == 10
    # Out of panic: stable says 0, clamped by max_scale_down_rate 2 to floor(10 / 2) = 5.
    assert p.desired(fv(now=62, ready=busy(10, 0))) == 5
    q = Reactive(target=10)
    # 30 in flight on 4 replicas: ceil(30 / 10) = 3, 3 / 4 < 2: no panic.
    assert q.desired(fv(ready=[*busy(4, 7), V(4, running=2)])) == 3
    k = Reactive(target=0.5, metric="kv_utilization")
    assert k.desired(fv(ready=[V(0, kv_utilization=0.9), V(1, kv_utilization=0.8)])) == 4
    with pytest.raises(InputError):
        Reactive(metric="qps")


def test_predictive_provisions_for_the_forecast_rate() -> None:
    p = Predictive(lead_s=10, utilization=0.5, interval_s=5)
    # 100 arrivals in 5 s = 20 req/s; 100 output tokens each at 1000 tok/s x 0.5 -> 5 req/s
    # per replica -> 4 replicas. A flat rate has no trend.
    assert p.desired(fv(interval_s=5, arrivals=100)) == 4
    assert p.desired(fv(interval_s=5, arrivals=100)) == 4
    # A rising rate: level and trend by Holt's formulas, forecast two ticks ahead.
    level = 0.5 * 40 + 0.5 * (20 + 0)
    trend = 0.3 * (level - 20)
    want = math.ceil((level + 2 * trend) / 5)
    assert p.desired(fv(interval_s=5, arrivals=200)) == want


def test_qlearning_update_rule_and_table_round_trip(tmp_path) -> None:
    q = QLearning(learning=True, epsilon=0.0, alpha=0.5, gamma=0.9, slo_weight=10, cost_weight=1)
    first = fv(ready=busy(2, 3), arrivals=10)
    s0 = q.state(first)
    q._prev_rate = None
    a0 = q.desired(first)
    assert q._prev[0] == s0 and a0 == 2 + q.actions[q._prev[1]]
    act = q._prev[1]
    nxt = fv(ready=busy(2, 3), arrivals=10, finished=10, finished_met_slo=5)
    r = -1 * 2 / 100 - 10 * 0.5
    q.desired(nxt)
    assert q.q[s0, act] == pytest.approx(0.5 * (r + 0.9 * 0.0))
    path = tmp_path / "q.json"
    import json

    path.write_text(json.dumps(q.table()))
    frozen = make_autoscaler("qlearning", {"table": str(path)})
    assert (frozen.q == q.q).all()
    with pytest.raises(InputError, match="table shape"):
        QLearning(table=[[0.0]])


def test_autoscaling_config_errors() -> None:
    with pytest.raises(InputError, match=r"autoscaling\.group"):
        apply_overrides(default_scenario(), {"autoscaling": {"group": "nope"}})
    with pytest.raises(InputError, match="min_replicas"):
        apply_overrides(default_scenario(), {"autoscaling": {"min_replicas": 5, "max_replicas": 2}})
    with pytest.raises(InputError, match="unknown autoscaling policy"):
        run(bursty("magic"))
