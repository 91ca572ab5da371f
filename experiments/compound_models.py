"""Compound (d, e): model routing fused with load balancing (RouteBalance) and an
accuracy/energy bandit (GreenServ).

A heterogeneous fleet: 4 x Llama-3.1-8B (one H100 each) and 1 x Llama-3.1-70B (4 x H100,
TP 4). Requests carry a task class (the default quality table, from Meta's Llama 3.1 model
card: knowledge, code, math_word, math in equal shares) and a difficulty uniform in [0, 1];
the judge draws each answer's correctness from the table, the engine meters each step's
energy. Prompts lognormal mean 1,000 tokens, answers mean 250. Routers:

* ``random``, ``least_requests``: model-blind;
* ``quality_first``: the best model for the task, then its least loaded instance (the
  *serial* stack RouteBalance compares against);
* ``route_balance``: one score per instance over quality, cost, predicted latency and KV
  balance (RouteBalance's weights 0.3 / 0.2 / 0.3 / 0.2);
* ``green_bandit``: LinUCB over task and difficulty, reward 0.5 accuracy + 0.5 (1 - energy
  per token, normalised) (GreenServ's defaults).

    python experiments/compound_models.py            # ~4 min on 2 busy cores
"""

from __future__ import annotations

import argparse

from _common import Timer, fmt, markdown, pct, save
from fleetsched.core.config import Scenario
from fleetsched.sweep import run_many

ROUTERS = ["random", "least_requests", "quality_first", "route_balance", "green_bandit"]
TASKS = ["knowledge", "code", "math_word", "math"]


def scenario(router: str, rate: float, n: int) -> Scenario:
    return Scenario.model_validate(
        {
            "name": f"models-{router}-{rate:g}",
            "seed": 0,
            "cluster": [
                {"name": "small", "gpu": "H100-SXM", "model": "Llama-3.1-8B", "count": 4},
                {"name": "large", "gpu": "H100-SXM", "model": "Llama-3.1-70B", "tp": 4},
            ],
            "workload": {
                "synthetic": {
                    "num_requests": n,
                    "arrival": {"rate": rate},
                    "prompt": {"kind": "lognormal", "mean": 1000, "sigma": 0.8},
                    "output": {"kind": "lognormal", "mean": 250, "sigma": 0.8},
                    "tasks": [{"name": t} for t in TASKS],
                    "difficulty": True,
                }
            },
            "policies": {"router": {"name": router}},
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--rates", default="6,12,24")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    rates = [float(x) for x in a.rates.split(",")]
    grid = [(r, rate) for rate in rates for r in ROUTERS]
    with Timer():
        out = run_many([scenario(r, rate, a.requests) for r, rate in grid], jobs=a.jobs)
    rows, data = [], {}
    for (r, rate), s in zip(grid, out, strict=True):
        data[f"{r}@{rate:g}"] = s
        per = s.get("per_model_requests", {})
        large = per.get("Llama-3.1-70B", 0) / max(sum(per.values()), 1)
        rows.append(
            [
                f"{rate:g}",
                r,
                pct(s["accuracy"]),
                pct(large),
                fmt(s["ttft_s"]["p99"], 2),
                fmt(s["e2e_s"]["p50"], 1),
                fmt(s["e2e_s"]["p99"], 1),
                fmt(s["energy_per_request_j"], 0),
                fmt(s["fleet_energy_j"] / 1e6, 2),
            ]
        )
    head = [
        "req/s",
        "router",
        "accuracy",
        "to 70B",
        "TTFT p99 s",
        "E2E p50 s",
        "E2E p99 s",
        "J / request",
        "fleet MJ",
    ]
    save("compound_models", data, markdown(head, rows))


if __name__ == "__main__":
    main()
