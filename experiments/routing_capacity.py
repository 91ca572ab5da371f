"""Experiment 5c: DualMap's claim — capacity (the highest rate at which 90 % of requests meet
TTFT <= 5 s) of dualmap against cache_aware, consistent_hash and round_robin on the Mooncake
conversation trace (8 x H100, Llama-3.1-8B).

    python experiments/routing_capacity.py
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

from _common import Timer, markdown, save, trace_scenario
from fleetsched.sweep import capacity_search, variant

ROUTERS = ["dualmap", "cache_aware", "consistent_hash", "round_robin"]


def capacity(
    router: str,
    instances: int,
    low: float = 1.0,
    high: float = 16.0,
    rel_tol: float = 0.05,
    trust_range: bool = False,
) -> tuple[float, list[tuple[float, float]]]:
    """Capacity of ``router`` by bisection over [low, high]. ``trust_range``: take it as known
    (from an earlier run) that ``low`` meets the SLO and ``high`` does not, and skip those two
    simulations (a bounded run; the table then counts only the probes simulated)."""
    from fleetsched.sim.run import simulate

    base = trace_scenario(
        "mooncake_fast25/conversation_trace.jsonl", instances, ttft_s=5.0, tpot_s=10.0
    )
    probes: list[tuple[float, float]] = []

    def meets(scale: float) -> bool:
        if trust_range and scale in (low, high):
            return scale == low
        s = simulate(variant(base, router=router, rate_scale=scale)).summary
        probes.append((scale, s["slo_attainment"]))
        print(f"{router} @ {scale:.3f}x: {s['slo_attainment']:.1%} within the SLO", flush=True)
        return s["slo_attainment"] >= 0.9

    return capacity_search(meets, low, high, rel_tol=rel_tol), probes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=8)
    ap.add_argument("--routers", default=",".join(ROUTERS))
    ap.add_argument("--range", default="1,16", help="low,high rate scale of the bisection")
    ap.add_argument("--tol", type=float, default=0.05, help="stop when high/low - 1 <= this")
    ap.add_argument(
        "--trust-range",
        action="store_true",
        help="known from an earlier run: low meets the SLO and high fails (skip both)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="routers searched in parallel")
    a = ap.parse_args()
    routers = a.routers.split(",")
    low, high = (float(x) for x in a.range.split(","))
    n = len(routers)
    with Timer(), ProcessPoolExecutor(a.jobs) as pool:
        res = dict(
            zip(
                routers,
                pool.map(
                    capacity,
                    routers,
                    [a.instances] * n,
                    [low] * n,
                    [high] * n,
                    [a.tol] * n,
                    [a.trust_range] * n,
                ),
                strict=True,
            )
        )
    base_rate = 12031 / 3537.0
    rows = []
    rr = res.get("round_robin", next(iter(res.values())))[0]
    for r, (cap, probes) in res.items():
        rows.append(
            [r, f"{cap:.2f}x", f"{cap * base_rate:.1f}", f"{cap / rr:.2f}", str(len(probes))]
        )
    table = markdown(
        ["router", "capacity (rate scale)", "req/s", "vs round_robin", "simulations"], rows
    )
    save(
        "routing_capacity",
        {r: {"capacity_scale": c, "probes": p} for r, (c, p) in res.items()},
        table,
    )


if __name__ == "__main__":
    main()
