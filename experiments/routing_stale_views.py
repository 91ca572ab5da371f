"""Experiment 5d: the cost of stale load signals. A gateway sees engine metrics (KV use,
running batch) only as often as it scrapes them, plus its own exact in-flight counts. How
much do load-aware routers lose when the scrape interval grows?

The embedded default scenario (4 x H100, Llama-3.1-8B, multi-turn chat, 12,000 requests) under
`least_kv` (reads only the scraped KV use), `least_requests` (router-side counts, exact
whatever the interval) and `prefix_load` (prefix + queue + KV scorers), with views refreshed
every 0 (exact), 50 ms, 250 ms and 1 s.

    python experiments/routing_stale_views.py
"""

from __future__ import annotations

import argparse

from _common import Timer, markdown, ms, pct, save
from fleetsched.cli.options import default_scenario
from fleetsched.core.config import Scenario
from fleetsched.sweep import run_many, variant

ROUTERS = ["least_kv", "least_requests", "prefix_load"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--intervals", default="0,0.05,0.25,1.0", help="seconds; 0 = exact state")
    a = ap.parse_args()
    intervals = [float(x) for x in a.intervals.split(",")]
    base = default_scenario()
    grid = [(r, i) for r in ROUTERS for i in intervals]
    scenarios = [
        Scenario.model_validate(
            variant(base, router=r).model_copy(update={"view_refresh_s": i}).model_dump()
        )
        for r, i in grid
    ]
    with Timer():
        out = run_many(scenarios)
    rows, data = [], {}
    for (r, i), s in zip(grid, out, strict=True):
        data[f"{r}@{i:g}"] = s
        rows.append(
            [
                r,
                "exact" if i == 0 else f"{i * 1000:g} ms",
                ms(s["ttft_s"]["p50"]),
                ms(s["ttft_s"]["p99"]),
                ms(s["e2e_s"]["p99"]),
                f"{s['goodput_req_s']:.2f}",
                pct(s["slo_attainment"]),
                str(s["preemptions"]),
                f"{s['load_cov']:.3f}",
            ]
        )
    table = markdown(
        [
            "router",
            "view refresh",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "E2E p99 ms",
            "goodput req/s",
            "SLO att.",
            "preemptions",
            "load CoV",
        ],
        rows,
    )
    save("routing_stale_views", data, table)


if __name__ == "__main__":
    main()
