"""Experiment 6d: offline batch jobs co-located with online chat (xLLM-style) on 1 x H100 /
Llama-3.1-8B. Does the online SLO hold while batch jobs fill the idle capacity?

Online: Poisson chat (lognormal prompts mean 1,000, outputs mean 250 tokens; SLO TTFT <= 1 s,
TPOT <= 50 ms) at about half the instance's capacity for 10 minutes. Batch: 12,000 jobs
(lognormal prompts mean 2,000 and outputs mean 400 tokens) submitted in the first minute, due
dates spread over 5-15 minutes. Variants: online alone; online + batch under vLLM's defaults
(FCFS, aggressive, newest victim); and the co-location policies (online first, batch under a
KV ceiling, batch jobs preempted for online requests) with EDD and MDD batch order.

    python experiments/engine_colocation.py
"""

from __future__ import annotations

import argparse
import heapq
from dataclasses import replace

import numpy as np

from _common import Timer, markdown, ms, pct, save
from fleetsched.core.config import (
    ArrivalConfig,
    InstanceGroup,
    LengthConfig,
    PoliciesConfig,
    PolicyRef,
    Scenario,
    SLOClass,
    SyntheticConfig,
    TenantConfig,
    WorkloadConfig,
)
from fleetsched.core.request import Request
from fleetsched.sim.run import simulate
from fleetsched.workload import generate


def online(rate: float, n: int, seed: int) -> list[Request]:
    cfg = SyntheticConfig(
        num_requests=n,
        arrival=ArrivalConfig(kind="poisson", rate=rate),
        prompt=LengthConfig(kind="lognormal", mean=1000, sigma=0.7, max=8192),
        output=LengthConfig(kind="lognormal", mean=250, sigma=0.7, max=2048),
        tenants=[TenantConfig(name="chat", slo_class="interactive", priority=1)],
    )
    return list(generate(cfg, seed))


def batch(n: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed + 1)
    arrivals = np.sort(rng.uniform(0, 60, n))
    due = rng.uniform(300, 900, n)
    prompts = np.minimum(rng.lognormal(np.log(2000) - 0.32, 0.8, n), 16000).astype(int) + 1
    outputs = np.minimum(rng.lognormal(np.log(400) - 0.32, 0.8, n), 4000).astype(int) + 1
    return [
        Request(
            0, float(t), int(p), int(o), tenant="offline", slo_class="batch", deadline_s=float(d)
        )
        for t, d, p, o in zip(arrivals, due, prompts, outputs, strict=True)
    ]


def merged(a: list[Request], b: list[Request]) -> list[Request]:
    out = heapq.merge(a, b, key=lambda r: r.arrival_s)
    return [replace(r, id=i) for i, r in enumerate(out)]


def scenario(policies: PoliciesConfig) -> Scenario:
    return Scenario(
        name="colocation",
        workload=WorkloadConfig(synthetic=SyntheticConfig(num_requests=1)),  # replaced
        cluster=[InstanceGroup(gpu="H100-SXM", model="Llama-3.1-8B", count=1)],
        policies=policies,
        slo_classes={
            "interactive": SLOClass(ttft_s=1.0, tpot_s=0.05),
            "batch": SLOClass(ttft_s=1e9, tpot_s=1e9),
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=6.0, help="online requests per second")
    ap.add_argument("--online", type=int, default=3600)
    ap.add_argument("--batch", type=int, default=12000)
    ap.add_argument("--kv-limit", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    on = online(a.rate, a.online, a.seed)
    both = merged(on, batch(a.batch, a.seed))
    defaults = PoliciesConfig()

    def colocate(order: str) -> PoliciesConfig:
        return PoliciesConfig(
            ordering=PolicyRef(name="colocate", params={"batch_order": order, "s_per_token": 2e-4}),
            admission=PolicyRef(name="colocate", params={"batch_kv_limit": a.kv_limit}),
            preemption=PolicyRef(name="colocate"),
        )

    variants = [
        ("online only", defaults, on),
        ("online + batch, vLLM defaults", defaults, both),
        ("online + batch, colocate EDD", colocate("edd"), both),
        ("online + batch, colocate MDD", colocate("mdd"), both),
    ]
    rows, data = [], {}
    with Timer():
        for name, pol, reqs in variants:
            s = simulate(scenario(pol), requests=reqs).summary
            data[name] = s
            o = s["per_class"]["interactive"]
            b = s["per_class"].get("batch")
            dl = s["deadlines"]
            batch_done = (b["requests"] if b else 0) and dl["requests"]
            rows.append(
                [
                    name,
                    pct(o["attainment"]),
                    ms(o["ttft_p99"]),
                    ms(o["tpot_p99"]),
                    f"{s['output_tok_s']:,.0f}",
                    f"{batch_done}" if b else "-",
                    pct(dl["met_rate"]) if b else "-",
                    f"{dl['total_tardiness_s']:,.0f}" if b else "-",
                    str(s["preemptions"]),
                    f"{s['duration_s']:,.0f}",
                ]
            )
    table = markdown(
        [
            "variant",
            "online SLO att.",
            "online TTFT p99 ms",
            "online TPOT p99 ms",
            "output tok/s (all)",
            "batch jobs",
            "batch due dates met",
            "total tardiness s",
            "preemptions",
            "makespan s",
        ],
        rows,
    )
    save("engine_colocation", data, table)


if __name__ == "__main__":
    main()
