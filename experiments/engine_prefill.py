"""Engine experiment (c): preemptible prefill vs fixed prefill chunk sizes.

One H100-SXM serving Llama-3.1-8B gets a mix of two Poisson streams (generated here, seeded):

* ``long``: prompts uniform 8k-32k tokens, outputs uniform 100-400, priority 0, SLO class
  ``batch`` (TTFT <= 10 s);
* ``short``: prompts uniform 200-1,000 tokens, outputs uniform 50-300, priority 1 (more
  important), SLO class ``interactive`` (TTFT <= 0.5 s).

All variants order the waiting queue by priority (``ordering: priority``), so a short request
never waits behind queued long ones; what remains is head-of-line blocking by a long prompt
*already being prefilled*: vLLM schedules running partial prefills before waiting requests,
so without a cap a 32k prompt takes the whole 8,192-token budget for four steps (~0.8 s).

Variants (``EngineConfig``): ``long_prefill_token_threshold`` = 0 (no per-request cap: the
chunk is the step budget, 8,192), 2,048 and 512; and ``preemptible_prefill`` with no cap and
``prefill_yield_tokens`` = 256 (FlowPrefill-style: an arriving higher-priority request stops
the long chunk of the step in progress at the next 256-token boundary and prefills next; the
long prompt resumes after it).

Measured: the short requests' TTFT attainment (<= 0.5 s) and TTFT p50/p99, the long
requests' TTFT mean/p99, TPOT p50/p99 over all requests (decodes share every step with the
prefill chunks), overall throughput (input + output tokens/s), preemptions and engine steps,
at several loads (both rates scaled).

Reproduce (under a minute on 2 cores):

    .venv/bin/python experiments/engine_prefill.py
    .venv/bin/python experiments/engine_prefill.py --loads 1.6 --seed 1 --out engine_prefill_seed1
    .venv/bin/python experiments/engine_prefill.py --loads 1 --yield-tokens 256,1024
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from _common import Timer, fmt, markdown, ms, pct, save
from fleetsched.core.config import (
    InstanceGroup,
    PoliciesConfig,
    PolicyRef,
    Scenario,
    SLOClass,
    SyntheticConfig,
    WorkloadConfig,
)
from fleetsched.core.request import Request

SLO = {
    "interactive": SLOClass(ttft_s=0.5, tpot_s=0.1),
    "batch": SLOClass(ttft_s=10.0, tpot_s=0.1),
}


def variants(yield_tokens: list[int]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [
        ("chunk cap none (8192 budget)", {"long_prefill_token_threshold": 0}),
        ("chunk cap 2048", {"long_prefill_token_threshold": 2048}),
        ("chunk cap 512", {"long_prefill_token_threshold": 512}),
    ]
    for y in yield_tokens:
        out.append(
            (
                f"preemptible (yield {y}, no cap)",
                {
                    "long_prefill_token_threshold": 0,
                    "preemptible_prefill": True,
                    "prefill_yield_tokens": y,
                },
            )
        )
    return out


def make_requests(n: int, long_rate: float, short_rate: float, seed: int) -> list[Request]:
    """Two merged Poisson streams (long: priority 0, short: priority 1), ids by arrival."""
    rng = np.random.Generator(np.random.PCG64(seed))
    p_long = long_rate / (long_rate + short_rate)
    gaps = rng.exponential(1.0 / (long_rate + short_rate), n)
    t = np.cumsum(gaps)
    is_long = rng.random(n) < p_long
    lp = rng.integers(8192, 32768, n, endpoint=True)
    lo = rng.integers(100, 400, n, endpoint=True)
    sp = rng.integers(200, 1000, n, endpoint=True)
    so = rng.integers(50, 300, n, endpoint=True)
    out = []
    for i in range(n):
        if is_long[i]:
            out.append(
                Request(
                    id=i,
                    arrival_s=float(t[i]),
                    prompt_tokens=int(lp[i]),
                    output_tokens=int(lo[i]),
                    tenant="long",
                    priority=0,
                    slo_class="batch",
                )
            )
        else:
            out.append(
                Request(
                    id=i,
                    arrival_s=float(t[i]),
                    prompt_tokens=int(sp[i]),
                    output_tokens=int(so[i]),
                    tenant="short",
                    priority=1,
                    slo_class="interactive",
                )
            )
    return out


def scenario(engine: dict[str, Any], gpu: str, ordering: str) -> Scenario:
    from fleetsched.core.config import EngineConfig

    return Scenario(
        name="prefill",
        # The workload is replaced by the generated requests (simulate(requests=...)).
        workload=WorkloadConfig(synthetic=SyntheticConfig(num_requests=1)),
        cluster=[
            InstanceGroup(gpu=gpu, model="Llama-3.1-8B", count=1, engine=EngineConfig(**engine))
        ],
        slo_classes=SLO,
        policies=PoliciesConfig(ordering=PolicyRef(name=ordering)),
    )


def run(job: tuple[dict[str, Any], str, str, int, float, float, int]) -> dict[str, Any]:
    from fleetsched.sim.run import simulate

    engine, gpu, ordering, n, long_rate, short_rate, seed = job
    reqs = make_requests(n, long_rate, short_rate, seed)
    res = simulate(scenario(engine, gpu, ordering), requests=reqs)
    s = res.summary
    by: dict[str, Any] = {}
    for cls in ("interactive", "batch"):
        rs = [r for r in res.records if r.slo_class == cls and r.finished]
        ttft = np.array([r.ttft_s for r in rs])
        by[cls] = {
            "requests": len(rs),
            "ttft_mean": float(ttft.mean()),
            "ttft_p50": float(np.percentile(ttft, 50)),
            "ttft_p99": float(np.percentile(ttft, 99)),
            "ttft_attainment": float(np.mean(ttft <= SLO[cls].ttft_s)),
        }
    return {"summary": s, "by_class": by}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--long-rate", type=float, default=0.5, help="long prompts/s at load 1")
    ap.add_argument("--short-rate", type=float, default=5.0, help="short prompts/s at load 1")
    ap.add_argument("--loads", default="1,1.4,1.6,2", help="scale both rates by these factors")
    ap.add_argument("--yield-tokens", default="256", help="prefill_yield_tokens values")
    ap.add_argument("--ordering", default="priority")
    ap.add_argument("--gpu", default="H100-SXM")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="engine_prefill", help="results/<out>.md and .json")
    a = ap.parse_args()
    loads = [float(x) for x in a.loads.split(",")]
    vs = variants([int(x) for x in a.yield_tokens.split(",")])
    grid = [(ld, label, eng) for ld in loads for label, eng in vs]
    jobs = [
        (eng, a.gpu, a.ordering, a.requests, a.long_rate * ld, a.short_rate * ld, a.seed)
        for ld, _label, eng in grid
    ]
    with Timer(), ProcessPoolExecutor(a.jobs) as pool:
        out = list(pool.map(run, jobs))
    rows, data = [], {"config": vars(a)}
    for (ld, label, _eng), res in zip(grid, out, strict=True):
        data[f"{label}@{ld:g}"] = res
        s, sh, lg = res["summary"], res["by_class"]["interactive"], res["by_class"]["batch"]
        rows.append(
            [
                f"{ld:g}x ({a.long_rate * ld:g} + {a.short_rate * ld:g} req/s)",
                label,
                pct(sh["ttft_attainment"]),
                ms(sh["ttft_p50"]),
                ms(sh["ttft_p99"]),
                ms(lg["ttft_mean"]),
                ms(lg["ttft_p99"]),
                pct(lg["ttft_attainment"]),
                ms(s["tpot_s"]["p50"]),
                ms(s["tpot_s"]["p99"]),
                fmt(s["input_tok_s"] + s["output_tok_s"], 0),
                str(s["preemptions"]),
                str(s["engine_steps"]),
            ]
        )
    table = (
        f"1 x {a.gpu}, Llama-3.1-8B, {a.requests} requests (seed {a.seed}), ordering {a.ordering}; "
        "long: 8k-32k prompt, priority 0, TTFT SLO 10 s; short: 200-1000 prompt, "
        "priority 1, TTFT SLO 0.5 s\n\n"
    )
    table += markdown(
        [
            "load (long + short)",
            "prefill",
            "short TTFT<=0.5s",
            "short TTFT p50 ms",
            "short TTFT p99 ms",
            "long TTFT mean ms",
            "long TTFT p99 ms",
            "long TTFT<=10s",
            "TPOT p50 ms",
            "TPOT p99 ms",
            "throughput tok/s (in+out)",
            "preemptions",
            "engine steps",
        ],
        rows,
    )
    save(a.out, data, table)


if __name__ == "__main__":
    main()
