"""Sampling per-instance queue, running batch and KV use: exact, and without side effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import LeastKV
from tests.test_sim_properties import PROF, _key, workloads

from fleetsched.cli.options import default_scenario
from fleetsched.core.config import EngineConfig, apply_overrides
from fleetsched.engine.instance import Instance
from fleetsched.errors import InputError
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator
from fleetsched.sim.run import simulate
from fleetsched.sim.sampler import Sampler


def _run(reqs, sampler, *, router, n, blocks, mode, ff):
    cfg = EngineConfig(max_num_batched_tokens=128, max_num_seqs=8, preemption_mode=mode)
    insts = [
        Instance(i, blocks, PROF, cfg, fast_forward=ff, kv_bytes_per_token=4096) for i in range(n)
    ]
    r = LeastKV() if router == "least_kv" else make_router(router)
    return Simulator(insts, r, sampler=sampler).run(reqs, check=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reqs=workloads(),
    router=st.sampled_from(["round_robin", "least_kv", "llumnix"]),
    n=st.integers(1, 3),
    blocks=st.integers(32, 80),
    mode=st.sampled_from(["recompute", "swap"]),
    ff=st.booleans(),
    interval=st.sampled_from([0.001, 0.013, 0.1]),
)
def test_sampling_does_not_change_the_simulation(reqs, router, n, blocks, mode, ff, interval):
    kw = dict(router=router, n=n, blocks=blocks, mode=mode, ff=ff)
    plain = _run(reqs, None, **kw)
    sampler = Sampler(interval)
    sampled = _run(reqs, sampler, **kw)
    assert [_key(r) for r in sampled] == [_key(r) for r in plain]
    s = sampler.series()
    assert s.t_s.size >= 1 and s.queue_len.shape == (s.t_s.size, n)
    t0 = reqs[0].arrival_s
    assert np.array_equal(s.t_s, t0 + np.arange(s.t_s.size) * interval)
    assert (s.running <= 8).all() and (s.queue_len >= 0).all()
    assert ((s.kv_utilization >= 0) & (s.kv_utilization <= 1)).all()
    # A running request holds KV blocks; with nothing running no block is in use.
    assert ((s.running > 0) == (s.kv_utilization > 0)).all()


def _light_scenario():
    return apply_overrides(
        default_scenario(),
        {
            "workload.synthetic.num_requests": 1500,
            "workload.synthetic.arrival.rate": 12.0,
            "router": "least_requests",
        },
    )


def test_samples_match_the_request_records():
    """Waiting and running counts per instance at each sample equal what the records imply:
    waiting = arrived but not yet scheduled, running = scheduled and not finished (the run
    has no preemption, so a request leaves the queue once)."""
    res = simulate(_light_scenario(), sample_interval_s=0.25)
    assert res.summary["preemptions"] == 0 and res.summary["completed"] == 1500
    s = res.timeseries
    assert s is not None and s.names == ["h100-0", "h100-1", "h100-2", "h100-3"]
    recs = res.records
    inst = np.array([r.instance for r in recs])
    arr = np.array([r.arrival_s for r in recs])
    sched = np.array([r.first_scheduled_s for r in recs])
    fin = np.array([r.finish_s for r in recs])
    events = np.concatenate([sched, fin])
    checked = 0
    for j, t in enumerate(s.t_s):
        if np.isclose(events, t, rtol=0, atol=1e-12).any():
            continue  # an event at the sample instant: either order is right
        for i in range(4):
            mine = inst == i
            waiting = int((mine & (arr <= t) & (sched > t)).sum())
            running = int((mine & (sched <= t) & (fin > t)).sum())
            assert (s.queue_len[j, i], s.running[j, i]) == (waiting, running), (t, i)
        checked += 1
    assert checked > 0.95 * s.t_s.size
    # Sampling lasts as long as the run: the last sample is within one interval of the end.
    assert abs(s.t_s[-1] - fin.max()) < 0.25
    assert s.running.max() > 4 and s.kv_utilization.max() > 0.05  # a real load was seen


def test_sampling_is_off_by_default():
    res = simulate(apply_overrides(_light_scenario(), {"workload.synthetic.num_requests": 50}))
    assert res.timeseries is None


@pytest.mark.parametrize("bad", [0, -1.0, math.nan])
def test_a_bad_interval_is_an_input_error(bad):
    with pytest.raises(InputError, match="sample interval"):
        Sampler(bad)


def test_an_autoscaled_fleet_is_sampled_as_it_grows():
    """Instances added during the run join the samples; before they exist they are idle."""
    sc = apply_overrides(
        default_scenario(),
        {
            "workload.synthetic.sessions.turns_mean": 1,
            "workload.synthetic.num_requests": 800,
            "workload.synthetic.arrival.rate": 30.0,
            "cluster.0.count": 1,
            "autoscaling": {
                "policy": {"name": "reactive", "params": {"target": 8, "stable_window_s": 10}},
                "max_replicas": 4,
                "startup_s": 2,
            },
        },
    )
    plain = simulate(sc)
    res = simulate(sc, sample_interval_s=0.5)
    assert [_key(r) for r in res.records] == [_key(r) for r in plain.records]
    s, c = res.timeseries, res.autoscaler
    ready = {i: t for t, kind, i in c.events if kind == "ready"}  # routable from then on
    assert ready and s.queue_len.shape[1] == 1 + len(ready) == len(s.names)
    for i, t_ready in ready.items():
        before = s.t_s < t_ready
        assert before.any() and not s.load[before, i].any()  # nothing routed to it yet
        assert s.load[~before, i].any()  # then it serves
