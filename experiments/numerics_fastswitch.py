"""Numerics (d): fairness with cheap context switches — FastSwitch vs vLLM swap (issue 19, item 4).

FastSwitch (Shen et al., arXiv:2411.18424) claims 1.4-11.2x lower tail TTFT and TBT than vLLM
under a preemption-based fairness scheduler, by moving KV in block groups instead of 16-token
blocks, overlapping swaps with compute, and reusing host copies.

Setup: one A10 serving Llama-3.1-8B (~47k tokens of KV), four tenants (``heavy`` sends 6/9 of
the requests, ``l1..l3`` 1/9 each), synthetic prompts lognormal mean 1,000 and outputs mean 250
tokens, Poisson arrivals around and above the instance's capacity. Fairness is preemptive VTC
(``ordering: vtc`` + ``preemption: vtc``: a waiting request of a tenant whose counter is more
than ``min_gap`` weighted tokens below the most-served running tenant's preempts that tenant's
newest request) with ``preemption_mode: swap``. ``min_gap`` sets how often it switches.
Engines: ``vllm`` (per-block copies, 2 x 32 layers per 16-token block, each with a fixed
``swap_copy_latency_s`` of 5 us, assumed; the step waits for its swaps), ``fastswitch`` (1,024-token
block groups, swaps overlapped with compute, host copies reused) and ``fastswitch, 16-token
groups`` (overlap and reuse only: what is left without block groups).

Reproduce (about 15 seconds on 2 cores):

    .venv/bin/python experiments/numerics_fastswitch.py
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import Timer, fmt, markdown, ms, save
from fleetsched.core.config import Scenario
from fleetsched.sweep import run_many

ENGINES: list[tuple[str, dict[str, Any]]] = [
    ("vllm", {"context_switch": "vllm"}),
    ("fastswitch", {"context_switch": "fastswitch"}),
    ("fastswitch, 16-token groups", {"context_switch": "fastswitch", "swap_group_tokens": 16}),
]


def scenario(rate: float, gap: float, engine: dict[str, Any], a: Any) -> Scenario:
    tenants = [{"name": "heavy", "weight": 6.0}] + [{"name": f"l{i}"} for i in (1, 2, 3)]
    return Scenario.model_validate(
        {
            "name": f"fair@{rate:g}",
            "seed": 0,
            "workload": {
                "synthetic": {
                    "num_requests": a.requests,
                    "arrival": {"rate": rate},
                    "prompt": {"kind": "lognormal", "mean": 1000, "sigma": 0.8},
                    "output": {"kind": "lognormal", "mean": 250, "sigma": 0.8},
                    "tenants": tenants,
                }
            },
            "cluster": [
                {
                    "gpu": a.gpu,
                    "model": "Llama-3.1-8B",
                    "engine": {
                        "preemption_mode": "swap",
                        "swap_copy_latency_s": a.copy_latency,
                        **engine,
                    },
                }
            ],
            "policies": {
                "ordering": {"name": "vtc"},
                "preemption": {"name": "vtc", "params": {"min_gap": gap}},
            },
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--gpu", default="A10")
    ap.add_argument("--rates", default="1.5,2.0,2.5")
    ap.add_argument("--gaps", default="500,2000", help="min_gap values (weighted tokens)")
    ap.add_argument("--copy-latency", type=float, default=5e-6, help="s per host-GPU copy")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    grid = [
        (float(r), float(g), e)
        for g in a.gaps.split(",")
        for r in a.rates.split(",")
        for e in ENGINES
    ]
    with Timer():
        out = run_many([scenario(r, g, e[1], a) for r, g, e in grid], jobs=a.jobs)
    data: dict[str, Any] = {"config": vars(a), "runs": {}}
    base = {(r, g): s for (r, g, e), s in zip(grid, out, strict=True) if e[0] == "vllm"}
    rows = []
    for (r, g, e), s in zip(grid, out, strict=True):
        data["runs"][f"gap{g:g}@{r:g}/{e[0]}"] = s
        b = base[(r, g)]
        rows.append(
            [
                f"{g:g}",
                f"{r:g}",
                e[0],
                str(s["preemptions"]),
                fmt(s["swap_s"], 1),
                ms(s["ttft_s"]["p99"]),
                fmt(b["ttft_s"]["p99"] / s["ttft_s"]["p99"]) + "x",
                ms(s["tpot_s"]["p99"]),
                fmt(b["tpot_s"]["p99"] / s["tpot_s"]["p99"]) + "x",
                fmt(s["throughput_tok_s"], 0),
            ]
        )
    table = (
        f"1 x {a.gpu}, Llama-3.1-8B, {a.requests} requests per run, preemptive VTC with swap, "
        f"{a.copy_latency * 1e6:g} us per copy\n\n"
    )
    table += markdown(
        [
            "min_gap",
            "rate req/s",
            "engine",
            "preemptions",
            "swap s",
            "TTFT p99 ms",
            "gain",
            "TPOT p99 ms",
            "gain",
            "output tok/s",
        ],
        rows,
    )
    save("numerics_fastswitch", data, table)


if __name__ == "__main__":
    main()
