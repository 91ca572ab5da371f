"""Autoscaling experiment: GPU-seconds against SLO attainment on bursty workloads.

Llama-3.1-8B on L40S replicas (a replica loads 16 GB of weights at 2 GB/s after 15 s of
start-up: 23 s from decision to first request), least-requests routing, SLO TTFT <= 2 s and
TPOT <= 200 ms. Two bursty workloads:

* ``azure-code``: the Azure LLM inference trace 2023, code (8,819 requests in 57 min;
  2,048-token prompts on average; minutes of 0 to 632 requests);
* ``onoff``: synthetic on/off traffic, 10 req/s on average (12,000 requests, 20 min) in
  exponential on (120 s mean) and off (240 s mean) periods, off periods at 5 % of the on
  rate (27 vs 1.4 req/s); prompts lognormal 1,500 tokens, outputs lognormal 150.

Policies: static fleets of 1-6 replicas; ``reactive`` (Knative KPA: concurrency targets 16
and 64 in flight per replica, and KV utilisation 0.5); ``predictive`` (Holt forecast 30 s
ahead at 30 % of the perf model's decode capacity); ``qlearning`` trained for
``--episodes`` 15-minute windows of a *different* trace (the Azure conversation trace) and
evaluated frozen. Autoscaled fleets may use up to 16 replicas; the KPA row keeps its
defaults (start at 2, min 1, cooldown 30 s), the tuned rows start at 3, keep at least 3 and
scale down at most every 300 s; Q-learning keeps at least 3 with a 30 s cooldown.

    .venv/bin/python experiments/autoscaling.py          # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import RESULTS, TRACES, Timer, markdown, pct, save
from fleetsched.cli.options import resolve_scenario
from fleetsched.core.config import Scenario, SLOClass, apply_overrides
from fleetsched.policies.autoscaling.qlearning import QLearning
from fleetsched.sim.run import simulate

GPU = "L40S"
#: The Q-learning agent scales down when it chooses to (a long cooldown would hide the
#: effect of its scale-down actions from it while it learns).
Q_AUTO = {"scale_down_cooldown_s": 30, "min_replicas": 3}
SLO = {"default": SLOClass(ttft_s=2.0, tpot_s=0.2)}


def base(workload: str, seed: int = 0) -> Scenario:
    if workload == "onoff":
        sc = resolve_scenario(None, seed=seed)
        sc = apply_overrides(
            sc,
            {
                "workload.synthetic": {
                    "num_requests": 10 * 1200,
                    "arrival": {
                        "kind": "bursty",
                        "rate": 10.0,
                        "on_s": 120,
                        "off_s": 240,
                        "off_rate_factor": 0.05,
                    },
                    "prompt": {"kind": "lognormal", "mean": 1500, "sigma": 0.8, "max": 8192},
                    "output": {"kind": "lognormal", "mean": 150, "sigma": 0.8, "max": 1024},
                },
            },
        )
    else:
        name = {"azure-code": "code", "azure-conv": "conv"}[workload]
        sc = resolve_scenario(
            None,
            trace=TRACES / "azure_llm_2023" / f"AzureLLMInferenceTrace_{name}.csv",
            seed=seed,
        )
    return Scenario.model_validate(sc.model_copy(update={"slo_classes": SLO}).model_dump())


def fleet(
    workload: str,
    policy: str,
    params: dict[str, Any],
    count: int = 2,
    auto: dict[str, Any] | None = None,
) -> Scenario:
    return apply_overrides(
        base(workload),
        {
            "cluster.0.gpu": GPU,
            "cluster.0.count": count,
            "router": "least_requests",
            "autoscaling": {
                "policy": {"name": policy, "params": params},
                "min_replicas": 1,
                "max_replicas": 16,
                **(auto or {}),
            },
        },
    )


Point = tuple[str, str, str, dict[str, Any], int, dict[str, Any]]


def point(args: Point) -> dict[str, Any]:
    workload, label, policy, params, count, auto = args
    s = simulate(fleet(workload, policy, params, count, auto)).summary
    a = s["autoscaling"]
    return {
        "workload": workload,
        "policy": label,
        "gpu_seconds": a["gpu_seconds"],
        "replicas_mean": a["replicas_mean"],
        "replicas_max": a["replicas_max"],
        "scale_ups": a["scale_ups"],
        "slo_attainment": s["slo_attainment"],
        "ttft_p99": s["ttft_s"]["p99"],
        "tpot_p99": s["tpot_s"]["p99"],
    }


def train(episodes: int, seed: int) -> tuple[list[list[float]], list[dict[str, Any]]]:
    """Q-learning on the Azure conversation trace: each episode a 15-minute window of it
    (four windows in turn), exploration decaying from 30 % to 2 %."""
    agent = QLearning(learning=True, epsilon=0.3, seed=seed)
    log = []
    for ep in range(episodes):
        agent.epsilon = max(0.02, 0.3 * (1 - ep / max(episodes - 1, 1)))
        start = 900.0 * (ep % 4)
        sc = apply_overrides(
            fleet("azure-conv", "qlearning", {}, 3, Q_AUTO),
            {
                "seed": seed + ep,
                "workload.transforms.start_s": start,
                "workload.transforms.end_s": start + 900.0,
            },
        )
        s = simulate(sc, autoscaling_policy=agent).summary
        agent.end_episode()
        log.append(
            {
                "episode": ep,
                "slo_attainment": s["slo_attainment"],
                "gpu_seconds": s["autoscaling"]["gpu_seconds"],
            }
        )
        print("train", log[-1], flush=True)
    return agent.table(), log


def frontier(rows: list[dict[str, Any]]) -> set[int]:
    """Indices of the rows no other row beats on both GPU-seconds and attainment."""
    keep = set()
    for i, r in enumerate(rows):
        if not any(
            o["gpu_seconds"] <= r["gpu_seconds"]
            and o["slo_attainment"] >= r["slo_attainment"]
            and (o["gpu_seconds"] < r["gpu_seconds"] or o["slo_attainment"] > r["slo_attainment"])
            for o in rows
        ):
            keep.add(i)
    return keep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="autoscaling")
    a = ap.parse_args()
    with Timer():
        table, log = train(a.episodes, a.seed)
        RESULTS.mkdir(exist_ok=True)
        qpath = RESULTS / f"{a.out}_qtable.json"
        qpath.write_text(json.dumps(table))
        tuned = {"scale_down_cooldown_s": 300, "min_replicas": 3}
        policies: list[tuple[str, str, dict[str, Any], int, dict[str, Any]]] = [
            (f"static {n}", "static", {}, n, {}) for n in (1, 2, 3, 4, 5, 6)
        ]
        policies += [
            ("reactive c=16 (KPA windows, cooldown 30 s)", "reactive", {"target": 16}, 2, {}),
            ("reactive c=16, cooldown 300 s, min 3", "reactive", {"target": 16}, 3, tuned),
            ("reactive c=64, cooldown 300 s, min 3", "reactive", {"target": 64}, 3, tuned),
            (
                "reactive kv=0.5, cooldown 300 s, min 3",
                "reactive",
                {"target": 0.5, "metric": "kv_utilization"},
                3,
                tuned,
            ),
            (
                "predictive u=0.3, cooldown 300 s, min 3",
                "predictive",
                {"utilization": 0.3},
                3,
                tuned,
            ),
            (
                "qlearning (trained on azure-conv), cooldown 30 s, min 3",
                "qlearning",
                {"table": str(qpath)},
                3,
                Q_AUTO,
            ),
        ]
        todo = [(w, *p) for w in ("azure-code", "onoff") for p in policies]
        with ProcessPoolExecutor(a.jobs) as pool:
            rows = list(pool.map(point, todo))
    out_rows = []
    for w in ("azure-code", "onoff"):
        mine = [r for r in rows if r["workload"] == w]
        front = frontier(mine)
        for i, r in enumerate(mine):
            out_rows.append(
                [
                    w,
                    r["policy"] + (" *" if i in front else ""),
                    f"{r['gpu_seconds']:,.0f}",
                    f"{r['replicas_mean']:.2f}",
                    str(r["replicas_max"]),
                    pct(r["slo_attainment"]),
                    f"{r['ttft_p99']:.2f}",
                    f"{r['tpot_p99'] * 1000:.0f}",
                ]
            )
    md = markdown(
        [
            "workload",
            "policy (* = on the frontier)",
            "GPU-seconds",
            "replicas mean",
            "max",
            "SLO att.",
            "TTFT p99 s",
            "TPOT p99 ms",
        ],
        out_rows,
    )
    save(a.out, {"rows": rows, "training": log}, md)


if __name__ == "__main__":
    main()
