"""Engine experiment (b): fair sharing between tenants — vtc and wfq vs fcfs ordering.

One H100-SXM serving Llama-3.1-8B gets a synthetic Poisson workload (prompts lognormal mean
1,000 tokens, outputs lognormal mean 250) from four tenants: ``heavy`` sends 6/9 of the
requests, ``light1..3`` 1/9 each. The instance serves about 25 req/s of this mix (its 256
seats fill up), so the default 37.5 req/s is a 1.5x overload and the waiting queue grows for
the whole arrival window; the waiting-queue order then decides who is served.

With equal shares each tenant is entitled to a quarter of the engine. The light tenants ask for
1/9 x 1.5 = 17 % of it each, under their share, so a fair scheduler should serve them as if
the heavy tenant were not there and make only the heavy tenant (asking for 100 %) wait.

Measured per ordering: Jain's index of the tenants' mean normalised latency
(``summary["fairness_jain"]``), light (pooled) vs heavy TTFT and E2E mean/p99, and the
tenants' *service* during the overload window (the arrival period; prompt tokens count when
the first token is out, output tokens linearly between first token and finish, priced
1 x prompt + 2 x output as VTC does): the heavy tenant's share, and Jain's index of each
tenant's service divided by its max-min fair share (water-filling of the window's service over
the tenants' demands) — 1.0 when every tenant gets exactly its fair share. For ``vtc`` the
virtual-counter gap between backlogged tenants is sampled at every arrival (a second run of
the same scenario with a hook; ``Instance.tenant_service`` through ``VTCQueue.counter``).

Variants: ``vtc`` and ``wfq`` with equal shares (``weights: {}``, the default), and with
shares equal to the traffic mix 6/1/1/1 (``weights: {heavy: 6, light1: 1, ...}``).

Reproduce (under a minute on 2 cores):

    .venv/bin/python experiments/engine_fairness.py
    .venv/bin/python experiments/engine_fairness.py --rate 30 --requests 3000
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from _common import Timer, fmt, markdown, ms, pct, save
from fleetsched.core.config import (
    ArrivalConfig,
    InstanceGroup,
    PoliciesConfig,
    Scenario,
    SLOClass,
    SyntheticConfig,
    TenantConfig,
    WorkloadConfig,
)
from fleetsched.metrics.records import RequestRecord
from fleetsched.metrics.stats import jain_index

W_IN, W_OUT = 1.0, 2.0

# (label, ordering, params)
MIX = {"heavy": 6.0, "light1": 1.0, "light2": 1.0, "light3": 1.0}
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("fcfs", "fcfs", {}),
    ("vtc (equal weights)", "vtc", {"weights": {}}),
    ("wfq (equal weights)", "wfq", {"weights": {}}),
    ("vtc (shares = traffic mix 6/1/1/1)", "vtc", {"weights": MIX}),
    ("wfq (shares = traffic mix 6/1/1/1)", "wfq", {"weights": MIX}),
]


def base_scenario(a: argparse.Namespace) -> Scenario:
    tenants = [TenantConfig(name="heavy", weight=a.heavy_weight)] + [
        TenantConfig(name=f"light{i + 1}", weight=1.0) for i in range(a.light_tenants)
    ]
    return Scenario(
        name="fairness",
        seed=a.seed,
        workload=WorkloadConfig(
            synthetic=SyntheticConfig(
                num_requests=a.requests,
                arrival=ArrivalConfig(kind="poisson", rate=a.rate),
                tenants=tenants,
            )
        ),
        cluster=[InstanceGroup(gpu=a.gpu, model="Llama-3.1-8B", count=1)],
        slo_classes={"default": SLOClass(ttft_s=2.0, tpot_s=0.1)},
        policies=PoliciesConfig(),
    )


def water_fill(demand: dict[str, float], capacity: float) -> dict[str, float]:
    """Max-min fair shares of ``capacity`` over ``demand`` (equal weights)."""
    fair: dict[str, float] = {}
    left = dict(demand)
    cap = capacity
    while left:
        level = cap / len(left)
        small = {t: d for t, d in left.items() if d <= level}
        if not small:
            fair.update({t: level for t in left})
            break
        for t, d in small.items():
            fair[t] = d
            cap -= d
            del left[t]
    return fair


def window_service(records: list[RequestRecord]) -> dict[str, Any]:
    """Service (1 x prompt + 2 x output tokens) per tenant during the arrival window."""
    t0 = min(r.arrival_s for r in records)
    t1 = max(r.arrival_s for r in records)
    served: dict[str, float] = {}
    demand: dict[str, float] = {}
    for r in records:
        cost = W_IN * r.prompt_tokens + W_OUT * r.output_tokens
        demand[r.tenant] = demand.get(r.tenant, 0.0) + cost
        s = 0.0
        if r.first_token_s <= t1:
            s += W_IN * r.prompt_tokens
            span = r.finish_s - r.first_token_s
            frac = 1.0 if span <= 0 else min(1.0, (t1 - r.first_token_s) / span)
            s += W_OUT * r.output_tokens * frac
        served[r.tenant] = served.get(r.tenant, 0.0) + s
    total = sum(served.values())
    fair = water_fill(demand, total)
    ratio = {t: served[t] / fair[t] for t in served}
    return {
        "window_s": t1 - t0,
        "served": served,
        "demand": demand,
        "fair": fair,
        "served_over_fair": ratio,
        "service_jain": jain_index(list(ratio.values())),
        "heavy_share": served.get("heavy", 0.0) / total if total else float("nan"),
    }


def group_latency(records: list[RequestRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, pick in (("heavy", lambda t: t == "heavy"), ("light", lambda t: t != "heavy")):
        rs = [r for r in records if pick(r.tenant) and r.finished]
        ttft = np.array([r.ttft_s for r in rs])
        e2e = np.array([r.e2e_s for r in rs])
        out[name] = {
            "requests": len(rs),
            "ttft_mean": float(ttft.mean()),
            "ttft_p99": float(np.percentile(ttft, 99)),
            "e2e_mean": float(e2e.mean()),
            "e2e_p99": float(np.percentile(e2e, 99)),
        }
    return out


def vtc_counter_gap(sc: Scenario) -> dict[str, Any]:
    """Rerun ``sc`` (a vtc scenario) sampling the counters of backlogged tenants at every
    arrival (mirrors ``fleetsched.sim.run.simulate`` to get at the instance)."""
    from fleetsched.policies.routing import make_router
    from fleetsched.sim.build import build_instances
    from fleetsched.sim.kernel import Simulator
    from fleetsched.workload import build_workload

    insts = build_instances(
        sc.cluster,
        sc.policies,
        slo_classes=dict(sc.slo_classes),
        seed=sc.seed,
    )
    q = insts[0].waiting
    router = make_router(sc.policies.router.name, sc.policies.router.params, seed=sc.seed)
    sim = Simulator(insts, router)
    gaps: list[float] = []
    samples = 0
    last: dict[str, float] = {}

    def hook(_n: int, _t: float) -> None:
        nonlocal samples, last
        backlogged = list(q._q)  # tenants with waiting requests (VTCQueue internals, read-only)
        samples += 1
        if len(backlogged) >= 2:
            c = [q.counter(t) for t in backlogged]
            gaps.append(max(c) - min(c))
        if sim.arrived == sc.workload.synthetic.num_requests and not last:
            last = {t: q.counter(t) for t in sorted({"heavy", *q._offset, *q._q})}

    sim.run(build_workload(sc.workload, sc.seed), progress=hook, progress_every=1)
    g = np.array(gaps) if gaps else np.array([0.0])
    return {
        "samples": samples,
        "samples_2plus_backlogged": len(gaps),
        "gap_mean": float(g.mean()),
        "gap_p99": float(np.percentile(g, 99)),
        "gap_max": float(g.max()),
        "counters_at_last_arrival": last,
    }


def run_variant(job: tuple[Scenario, bool]) -> dict[str, Any]:
    from fleetsched.sim.run import simulate

    sc, gap = job
    res = simulate(sc)
    out = {
        "summary": res.summary,
        "groups": group_latency(res.records),
        "service": window_service(res.records),
    }
    if gap:
        out["vtc"] = vtc_counter_gap(sc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=37.5, help="req/s (capacity ~25 on H100)")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--gpu", default="H100-SXM")
    ap.add_argument("--heavy-weight", type=float, default=6.0, help="heavy tenant traffic share")
    ap.add_argument("--light-tenants", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    from concurrent.futures import ProcessPoolExecutor

    from fleetsched.sweep import variant

    base = base_scenario(a)
    jobs = [
        (
            variant(base, ordering=o, policy_params={"ordering": p}, name=label),
            o == "vtc",
        )
        for label, o, p in VARIANTS
    ]
    with Timer(), ProcessPoolExecutor(a.jobs) as pool:
        out = list(pool.map(run_variant, jobs))
    rows, gap_rows, data = [], [], {"config": vars(a)}
    for (label, _o, _p), res in zip(VARIANTS, out, strict=True):
        data[label] = res
        s, g, sv = res["summary"], res["groups"], res["service"]
        pt = s["per_tenant"]
        light_nl = np.mean([v["mean_norm_latency_s"] for t, v in pt.items() if t != "heavy"])
        rows.append(
            [
                label,
                fmt(s["fairness_jain"], 3),
                fmt(sv["service_jain"], 3),
                pct(sv["heavy_share"]),
                ms(g["light"]["ttft_mean"]),
                ms(g["light"]["ttft_p99"]),
                ms(g["light"]["e2e_mean"]),
                ms(g["light"]["e2e_p99"]),
                ms(g["heavy"]["ttft_mean"]),
                ms(g["heavy"]["ttft_p99"]),
                ms(g["heavy"]["e2e_mean"]),
                ms(g["heavy"]["e2e_p99"]),
                f"{light_nl * 1000:.1f} / {pt['heavy']['mean_norm_latency_s'] * 1000:.1f}",
                fmt(s["throughput_tok_s"], 0),
            ]
        )
        if "vtc" in res:
            v = res["vtc"]
            ctr = v["counters_at_last_arrival"]
            gap_rows.append(
                [
                    label,
                    f"{v['samples_2plus_backlogged']} / {v['samples']}",
                    fmt(v["gap_mean"], 0),
                    fmt(v["gap_p99"], 0),
                    fmt(v["gap_max"], 0),
                    ", ".join(f"{t} {c / 1e6:.2f}M" for t, c in ctr.items()),
                ]
            )
    s0 = out[0]["summary"]
    table = (
        f"1 x {a.gpu}, Llama-3.1-8B, {a.requests} requests at {a.rate:g} req/s "
        f"(~{a.rate / 25:.1f}x capacity); tenants heavy (weight {a.heavy_weight:g}) + "
        f"{a.light_tenants} light (weight 1); arrival window "
        f"{out[0]['service']['window_s']:.0f} s, run {s0['duration_s']:.0f} s. "
        "Service = 1 x prompt + 2 x output tokens served during the arrival window.\n\n"
    )
    table += markdown(
        [
            "ordering",
            "Jain (norm. latency)",
            "Jain (service / fair share)",
            "heavy's service share",
            "light TTFT mean ms",
            "light TTFT p99 ms",
            "light E2E mean ms",
            "light E2E p99 ms",
            "heavy TTFT mean ms",
            "heavy TTFT p99 ms",
            "heavy E2E mean ms",
            "heavy E2E p99 ms",
            "norm. latency light / heavy ms/token",
            "output tok/s",
        ],
        rows,
    )
    if gap_rows:
        table += (
            "\n\nVTC counters (w_in 1, w_out 2, divided by weight, plus lift): gap between the"
            " largest and smallest counter of the backlogged tenants, sampled at each arrival"
            " when >= 2 tenants are backlogged\n\n"
        )
        table += markdown(
            [
                "variant",
                "samples with >=2 backlogged / all",
                "gap mean",
                "gap p99",
                "gap max",
                "counters at the last arrival",
            ],
            gap_rows,
        )
    save("engine_fairness", data, table)


if __name__ == "__main__":
    main()
