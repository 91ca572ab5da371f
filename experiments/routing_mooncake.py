"""Experiment 5a: prefix-aware routing on the Mooncake conversation trace (8 x H100, 8B).

Hit rate and p99 TTFT of cache_aware, prefix_load, kv_overlap and dualmap against
round_robin and least_requests, over a load sweep (the trace's arrivals sped up).

    python experiments/routing_mooncake.py [--scales 2,3,4,5]
"""

from __future__ import annotations

import argparse

from _common import Timer, markdown, ms, pct, save, trace_scenario
from fleetsched.sweep import run_many, variant

ROUTERS = ["round_robin", "least_requests", "cache_aware", "prefix_load", "kv_overlap", "dualmap"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="2,3,4,5")
    ap.add_argument("--instances", type=int, default=8)
    a = ap.parse_args()
    scales = [float(x) for x in a.scales.split(",")]
    base = trace_scenario("mooncake_fast25/conversation_trace.jsonl", a.instances, ttft_s=5.0)
    grid = [(s, r) for s in scales for r in ROUTERS]
    with Timer():
        out = run_many([variant(base, router=r, rate_scale=s) for s, r in grid])
    rows, data = [], {}
    for (s, r), summ in zip(grid, out, strict=True):
        data[f"{r}@{s:g}"] = summ
        rows.append(
            [
                f"{s:g}x ({summ['requests'] / summ['duration_s']:.1f} req/s)",
                r,
                pct(summ["prefix_hit_rate"]),
                ms(summ["ttft_s"]["p50"]),
                ms(summ["ttft_s"]["p99"]),
                pct(summ["slo_attainment"]),
                str(summ["preemptions"]),
            ]
        )
    table = markdown(
        [
            "load",
            "router",
            "prefix hit",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "TTFT<=5s & TPOT<=100ms",
            "preemptions",
        ],
        rows,
    )
    save("routing_mooncake", data, table)


if __name__ == "__main__":
    main()
