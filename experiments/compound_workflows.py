"""Compound (a, b): agent workflows.

(a) SAGA: scheduling a workflow's calls independently (round robin, least requests) against
keeping them where their context lives (``workflow_affinity``), with and without KV
retention across the tool gaps (``retention: ttl`` / ``workflow``). Chain workflows (ReAct
loops: each call extends the previous one's context after a tool gap) on 4 x A10G.

(b) HEXGEN-TEXT2SQL: the engine's waiting queue in arrival order (vLLM's FCFS) against
urgency ordering (``ordering: urgency``, remaining critical path vs the workflow deadline),
on text-to-SQL workflows (keywords, 3 SQL candidates each revised twice, unit tests, an
evaluation) with an end-to-end deadline, on 2 x H100 with 8 seats per engine (so a waiting
queue forms; with vLLM's 256 seats nothing waits and the order is moot): attainment as the
deadline tightens at a fixed rate, and as the rate grows at a fixed deadline.

    python experiments/compound_workflows.py            # ~4 min on 2 busy cores
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import Timer, fmt, markdown, pct, save
from fleetsched.core.config import Scenario
from fleetsched.sweep import run_many


def scenario(
    router: str,
    *,
    retention: str = "none",
    ordering: str = "fcfs",
    rate: float,
    n: int,
    shape: str = "chain",
    deadline_s: float | None = None,
    calls: int = 12,
    gpu: str = "A10G",
    count: int = 4,
    max_num_seqs: int | None = None,
) -> Scenario:
    return Scenario.model_validate(
        {
            "name": f"{shape}-{router}-{retention}-{ordering}-{rate:g}-{deadline_s}",
            "seed": 0,
            "cluster": [
                {
                    "gpu": gpu,
                    "model": "Llama-3.1-8B",
                    "count": count,
                    "engine": {"max_num_seqs": max_num_seqs},
                }
            ],
            "workload": {
                "workflows": {
                    "num_workflows": n,
                    "arrival": {"rate": rate},
                    "shape": shape,
                    "calls": calls,
                    "gap_s": 2.0 if shape == "chain" else 0.5,
                    "system_prompt_tokens": 2000,
                    "deadline_s": deadline_s,
                }
            },
            "policies": {
                "router": {"name": router},
                "retention": {"name": retention},
                "ordering": {"name": ordering},
            },
        }
    )


SAGA = [
    ("round_robin", "none"),
    ("least_requests", "none"),
    ("session_affinity", "none"),
    ("workflow_affinity", "none"),
    ("workflow_affinity", "ttl"),
    ("workflow_affinity", "workflow"),
]


def saga(rates: list[float], n: int, jobs: int) -> tuple[str, dict[str, Any]]:
    grid = [(r, ret, rate) for rate in rates for r, ret in SAGA]
    out = run_many([scenario(r, retention=ret, rate=rate, n=n) for r, ret, rate in grid], jobs=jobs)
    base = {rate: s for (r, ret, rate), s in zip(grid, out, strict=True) if (r, ret) == SAGA[3]}
    rows, data = [], {}
    for (r, ret, rate), s in zip(grid, out, strict=True):
        w = s["workflows"]
        b = base[rate]["workflows"]["e2e_s"]
        data[f"{r}/{ret}@{rate:g}"] = s
        rows.append(
            [
                f"{rate:g}",
                r,
                ret,
                fmt(w["e2e_s"]["p50"], 1),
                fmt(w["e2e_s"]["p99"], 1),
                f"{w['e2e_s']['p50'] / b['p50']:.2f}x",
                pct(s["prefix_hit_rate"]),
                fmt(s["ttft_s"]["p50"], 2),
                str(s["preemptions"]),
            ]
        )
    head = [
        "wf/s",
        "router",
        "retention",
        "wf E2E p50 s",
        "wf E2E p99 s",
        "p50 vs affinity",
        "prefix hit",
        "call TTFT p50 s",
        "preemptions",
    ]
    return markdown(head, rows), data


def hexgen(
    rate: float, deadlines: list[float], rates: list[float], deadline: float, n: int, jobs: int
) -> tuple[str, dict[str, Any]]:
    pol = ["fcfs", "urgency"]
    grid = [(o, rate, d) for d in deadlines for o in pol] + [
        (o, r, deadline) for r in rates for o in pol
    ]
    scs = [
        scenario(
            "least_requests",
            ordering=o,
            rate=r,
            n=n,
            shape="text2sql",
            deadline_s=d,
            calls=3,
            gpu="H100-SXM",
            count=2,
            max_num_seqs=8,
        )
        for o, r, d in grid
    ]
    out = run_many(scs, jobs=jobs)
    rows, data = [], {}
    for (o, r, d), s in zip(grid, out, strict=True):
        w = s["workflows"]
        data[f"{o}@{r:g}/{d:g}"] = s
        rows.append(
            [
                f"{r:g}",
                f"{d:g}",
                o,
                pct(w["deadline_attainment"]),
                fmt(w["goodput_wf_s"], 3),
                fmt(w["e2e_s"]["p50"], 1),
                fmt(w["e2e_s"]["p99"], 1),
            ]
        )
    head = [
        "wf/s",
        "deadline s",
        "ordering",
        "deadline met",
        "goodput wf/s",
        "E2E p50 s",
        "E2E p99 s",
    ]
    return markdown(head, rows), data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workflows", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    with Timer():
        t1, d1 = saga([0.25, 0.5], a.workflows, a.jobs)
        save("compound_saga", d1, t1)
        t2, d2 = hexgen(1.0, [10.0, 15.0, 20.0, 30.0], [0.5, 1.0, 1.5], 20.0, a.workflows, a.jobs)
        save("compound_hexgen", d2, t2)


if __name__ == "__main__":
    main()
