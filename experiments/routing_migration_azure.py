"""Experiment 5b: Llumnix live migration against least_requests on the Azure conv trace
(4 x A10G 24 GB, Llama-3.1-8B: little KV room, so memory pressure builds) at rising rate:
tail latency, preemptions and migrations.

    python experiments/routing_migration_azure.py [--scales 0.8,1,1.2,1.4]
"""

from __future__ import annotations

import argparse

from _common import Timer, markdown, ms, pct, save, trace_scenario
from fleetsched.sweep import run_many, variant

ROUTERS = ["least_requests", "llumnix"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="0.8,1,1.2,1.4")
    ap.add_argument("--instances", type=int, default=4)
    a = ap.parse_args()
    scales = [float(x) for x in a.scales.split(",")]
    base = trace_scenario(
        "azure_llm_2023/AzureLLMInferenceTrace_conv.csv", a.instances, ttft_s=2.0, gpu="A10G"
    )
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
                ms(summ["ttft_s"]["p99"]),
                ms(summ["e2e_s"]["p99"]),
                ms(summ["tpot_s"]["p99"]),
                pct(summ["slo_attainment"]),
                str(summ["preemptions"]),
                str(summ["migrations"]),
                f"{summ['migration_downtime_s'] * 1000:.1f}",
            ]
        )
    table = markdown(
        [
            "load",
            "router",
            "TTFT p99 ms",
            "E2E p99 ms",
            "TPOT p99 ms",
            "SLO att.",
            "preemptions",
            "migrations",
            "downtime ms (total)",
        ],
        rows,
    )
    save("routing_migration_azure", data, table)


if __name__ == "__main__":
    main()
