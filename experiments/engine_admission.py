"""Engine experiment (a): KV admission — past_future vs aggressive vs conservative.

One A100-40GB serving Llama-3.1-8B (about 158k tokens of KV cache: ~55 ShareGPT requests or
~55 arXiv requests at their full length, so KV memory, not compute, caps the batch) replays the
length-only Vidur traces of ShareGPT (prompts 2.3k, outputs 440 tokens on average, outputs
capped at 1,024) and arXiv summarisation (prompts 2.6k, outputs 290 on average but a long tail
to 4k) with Poisson arrivals. Measured per admission policy (``policies/engine``):

* a rate sweep around the knee of each workload: goodput (req/s meeting TTFT <= 2 s and
  TPOT <= 100 ms), SLO attainment, TTFT p50/p99, TPOT p99, preemptions;
* capacity: the highest rate at which >= 90 % of requests meet the SLO (bisection), the
  "goodput" of DistServe-style capacity planning, which does not depend on the arbitrary
  length of an overloaded run.

Policies: ``aggressive`` (vLLM: admit when the first chunk's blocks are free), ``conservative``
(reserve prompt + the request's *actual* output: an oracle, the best case of reservation),
``conservative`` with ``max_output_tokens`` = the trace's output cap rounded up to a power of
two (1,024 / 4,096: what a server that reserves ``max_tokens`` does, the Past-Future paper's
conservative baseline), and ``past_future`` (LightLLM; quantile 0.9, window 2,000).

SLO: TTFT <= 2 s is where queueing (conservative's cost) shows, since an 8k prompt prefills
in ~0.65 s on this GPU; TPOT <= 100 ms (about reading speed) is where preemption stalls and
large, slow batches (aggressive's cost) would show. Both are fixed across policies.

Reproduce (about 3 minutes on 2 cores):

    .venv/bin/python experiments/engine_admission.py
    .venv/bin/python experiments/engine_admission.py --tpot 0.05 --no-capacity \
        --out engine_admission_tpot50          # sensitivity: a stricter TPOT SLO
"""

from __future__ import annotations

import argparse
import csv
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import (
    LENGTH_TRACES,
    TRACES,
    Timer,
    fmt,
    length_trace_scenario,
    markdown,
    ms,
    pct,
    save,
)
from fleetsched.core.config import Scenario
from fleetsched.sweep import capacity_search, run_many, variant

DEFAULT_RATES = {"sharegpt": "1.9,2.1,2.3,2.5", "arxiv": "2.4,2.7,3.0,3.3"}
CAP_BRACKET = {"sharegpt": (1.0, 5.0), "arxiv": (1.0, 6.0)}


def output_cap(trace: str) -> int:
    """The trace's largest output length, rounded up to a power of two (a max_tokens)."""
    with open(TRACES / LENGTH_TRACES[trace]) as f:
        m = max(int(r["num_decode_tokens"]) for r in csv.DictReader(f))
    return 1 << (m - 1).bit_length()


def policies(trace: str) -> list[tuple[str, str, dict[str, Any]]]:
    cap = output_cap(trace)
    return [
        ("aggressive", "aggressive", {}),
        ("conservative (oracle)", "conservative", {}),
        (f"conservative (max_tokens={cap})", "conservative", {"max_output_tokens": cap}),
        ("past_future", "past_future", {}),
    ]


def scenario(trace: str, rate: float, a: argparse.Namespace, adm: str, params: dict) -> Scenario:
    base = length_trace_scenario(
        trace, rate, requests=a.requests, gpu=a.gpu, ttft_s=a.ttft, tpot_s=a.tpot
    )
    return variant(base, admission=adm, policy_params={"admission": params})


def capacity(job: tuple[str, str, dict, argparse.Namespace]) -> dict[str, Any]:
    from fleetsched.sim.run import simulate

    trace, adm, params, a = job
    probes: dict[float, dict[str, Any]] = {}

    def meets(rate: float) -> bool:
        s = simulate(scenario(trace, rate, a, adm, params)).summary
        probes[rate] = s
        return s["slo_attainment"] >= a.target

    lo, hi = CAP_BRACKET[trace]
    cap = capacity_search(meets, lo, hi, rel_tol=0.01)
    return {"capacity_rate": cap, "at_capacity": probes[cap], "probes": sorted(probes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="sharegpt,arxiv")
    ap.add_argument("--requests", type=int, default=3000, help="first N rows of each trace")
    ap.add_argument("--gpu", default="A100-40GB")
    ap.add_argument("--ttft", type=float, default=2.0, help="TTFT SLO, s")
    ap.add_argument("--tpot", type=float, default=0.1, help="TPOT SLO, s")
    ap.add_argument("--target", type=float, default=0.9, help="attainment defining capacity")
    ap.add_argument("--rates-sharegpt", default=DEFAULT_RATES["sharegpt"])
    ap.add_argument("--rates-arxiv", default=DEFAULT_RATES["arxiv"])
    ap.add_argument("--no-capacity", action="store_true", help="skip the capacity search")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="engine_admission", help="results/<out>.md and .json")
    a = ap.parse_args()
    traces = a.workloads.split(",")
    rates = {
        "sharegpt": [float(x) for x in a.rates_sharegpt.split(",")],
        "arxiv": [float(x) for x in a.rates_arxiv.split(",")],
    }
    grid = [(t, r, p) for t in traces for r in rates[t] for p in policies(t)]
    data: dict[str, Any] = {"config": vars(a), "sweep": {}, "capacity": {}}
    with Timer():
        out = run_many([scenario(t, r, a, p[1], p[2]) for t, r, p in grid], jobs=a.jobs)
        caps: list[dict[str, Any]] = []
        cap_jobs = [(t, p[1], p[2], a) for t in traces for p in policies(t)]
        if not a.no_capacity:
            with ProcessPoolExecutor(a.jobs) as pool:
                caps = list(pool.map(capacity, cap_jobs))

    good = {(t, r, p[0]): s["goodput_req_s"] for (t, r, p), s in zip(grid, out, strict=True)}
    rows = []
    for (t, r, p), s in zip(grid, out, strict=True):
        data["sweep"][f"{t}@{r:g}/{p[0]}"] = s
        pf = good[(t, r, "past_future")]
        gain = pf / s["goodput_req_s"] if s["goodput_req_s"] > 0 else float("nan")
        rows.append(
            [
                t,
                f"{r:g}",
                p[0],
                fmt(s["throughput_req_s"]),
                fmt(s["goodput_req_s"]),
                pct(s["slo_attainment"]),
                fmt(gain) + "x",
                ms(s["ttft_s"]["p50"]),
                ms(s["ttft_s"]["p99"]),
                ms(s["tpot_s"]["p99"]),
                str(s["preemptions"]),
            ]
        )
    table = (
        f"Rate sweep ({a.requests} requests per run, 1 x {a.gpu}, Llama-3.1-8B; "
        f"SLO TTFT <= {a.ttft:g} s and TPOT <= {a.tpot * 1000:g} ms)\n\n"
    )
    table += markdown(
        [
            "workload",
            "rate req/s",
            "admission",
            "throughput req/s",
            "goodput req/s",
            "SLO att.",
            "past_future gain",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "TPOT p99 ms",
            "preemptions",
        ],
        rows,
    )
    if caps:
        crow = []
        pf_cap = {
            t: c["capacity_rate"]
            for (t, adm, params, _), c in zip(cap_jobs, caps, strict=True)
            if adm == "past_future"
        }
        labelled = [(t, p) for t in traces for p in policies(t)]
        for (t, p), c in zip(labelled, caps, strict=True):
            s = c["at_capacity"]
            data["capacity"][f"{t}/{p[0]}"] = c
            crow.append(
                [
                    t,
                    p[0],
                    fmt(c["capacity_rate"]),
                    fmt(s["goodput_req_s"]),
                    fmt(pf_cap[t] / c["capacity_rate"]) + "x",
                    ms(s["ttft_s"]["p99"]),
                    ms(s["tpot_s"]["p99"]),
                    str(s["preemptions"]),
                ]
            )
        table += (
            f"\n\nCapacity: highest Poisson rate with >= {a.target:.0%} SLO attainment "
            "(bisection to 1 %), and the run at that rate\n\n"
        )
        table += markdown(
            [
                "workload",
                "admission",
                "capacity req/s",
                "goodput req/s",
                "past_future gain",
                "TTFT p99 ms",
                "TPOT p99 ms",
                "preemptions",
            ],
            crow,
        )
    save(a.out, data, table)


if __name__ == "__main__":
    main()
