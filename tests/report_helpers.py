"""Inputs shared by the report tests: a small real comparison (simulated once per test
session) and hand-made summaries, records, sweep and plan files following docs/report.md."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from fleetsched.cli.compare import Outputs, run_variants
from fleetsched.cli.options import resolve_scenario
from fleetsched.core.config import apply_overrides
from fleetsched.metrics.records import RequestRecord
from fleetsched.report import ReportData, Run

#: The browser test runs the same comparison through the command line.
COMPARE_ARGS = (
    "--routers",
    "round_robin,least_requests,cache_aware",
    "--requests",
    "2000",
    "--rate-scale",
    "5",
)
ROUTERS = ("round_robin", "least_requests", "cache_aware")


@lru_cache(maxsize=1)
def small_compare() -> tuple[Run, ...]:
    """The default chat scenario (two tenants) at 5x its rate, first 2,000 requests, under
    three routers, sampled every 0.5 s: queues build up, so the views have something to show."""
    sc = resolve_scenario(None, requests=2000, rate_scale=5.0)
    labelled = [(r, apply_overrides(sc, {"router": r})) for r in ROUTERS]
    runs = run_variants(labelled, jobs=1, outputs=Outputs(0.5, report=True))
    return tuple(run for _, run in runs)


def compare_data() -> ReportData:
    return ReportData(list(small_compare()), title="small compare")


def summ(ttft_p99: float = 0.5, tpot_p99: float = 0.05, router: str | None = None, **kw: Any):
    """A minimal summary as the contract needs it (keys of docs/metrics.md)."""
    d: dict[str, Any] = {
        "requests": 10,
        "completed": 10,
        "ttft_s": {
            "p50": ttft_p99 / 4,
            "p90": ttft_p99 / 2,
            "p95": ttft_p99 / 1.5,
            "p99": ttft_p99,
        },
        "tpot_s": {"p50": tpot_p99 / 2, "p90": tpot_p99 / 1.5, "p95": tpot_p99, "p99": tpot_p99},
        "e2e_s": {"p50": 2.0, "p90": 3.0, "p95": 3.5, "p99": 4.0},
        "throughput_req_s": 5.0,
        "slo_attainment": 0.9,
        "prefix_hit_rate": 0.25,
        "goodput_req_s": 4.5,
    }
    if router:
        d["scenario"] = {"name": "sc", "policies": {"router": {"name": router}}}
    d.update(kw)
    return d


def records(n: int = 5, instance_count: int = 2) -> list[RequestRecord]:
    out = []
    for i in range(n):
        r = RequestRecord(i, "t", "default", 0, 100, 10, arrival_s=float(i))
        r.instance = i % instance_count
        r.first_scheduled_s = i + 0.1
        r.first_token_s = i + 0.2 + 0.01 * i
        r.finish_s = i + 1.0
        r.cached_prompt_tokens = 20
        out.append(r)
    return out


def write_json(p: Path, d: Any) -> Path:
    p.write_text(json.dumps(d))
    return p


def sweep_doc() -> list[dict[str, Any]]:
    """A ``sweep -o DIR`` summaries.json, written by the sweep's own ``point_records``."""
    from fleetsched.sweep.grid import PointResult
    from fleetsched.sweep.output import point_records

    grids, results = [], []
    for router, slope in (("round_robin", 2.0), ("cache_aware", 1.0)):
        for rate in (2.0, 0.5, 1.0):  # out of order on purpose
            grids.append({"router": router, "rate_scale": rate, "cluster.0.count": 4})
            results.append(PointResult(summ(ttft_p99=slope * rate)))
    grids.append({"router": "dualmap", "rate_scale": 1.0, "cluster.0.count": 4})
    results.append(PointResult(None, error="boom"))
    return point_records(grids, results)


def plan_doc() -> dict[str, Any]:
    """What ``plan --summary-json`` writes (cli/plan.py ``plan_json``): per (GPU, TP) the
    replica counts simulated ("probes"), the choice."""
    cands = []
    for gpu, price, base in (("H100-SXM", 4.0, 4.0), ("A100-80GB", 2.0, 12.0)):
        probes = []
        for n in (1, 2, 4):
            ttft = base / n  # seconds: more replicas, lower p99
            probes.append(
                {
                    "replicas": n,
                    "cost_per_hour": price * n,
                    "meets": ttft < 2.0 + 1e-9,
                    "summary": summ(ttft_p99=ttft),
                }
            )
        cands.append(
            {
                "gpu": gpu,
                "tp": 1,
                "price_per_gpu_hour": price,
                "min_replicas_bound": 1,
                "replicas": 2 if gpu == "H100-SXM" else 4,
                "note": "",
                "probes": probes,
            }
        )
    return {
        "slo": "ttft_p99<=2s",
        "choice": {"gpu": "H100-SXM", "tp": 1, "replicas": 2, "gpus": 2, "cost_per_hour": 8.0},
        "verified": True,
        "verification": "",
        "candidates": cands,
    }
