"""Numerics (b): CPU offload with hybrid attention — APEX vs GPU-only vLLM (issue 19, item 2).

APEX (Fan et al., arXiv:2506.03296) keeps KV that does not fit on the GPU in host memory and
runs its decode attention on the CPU in parallel with the GPU step, dispatching only what the
GPU step can hide. Claim: +84-96 % throughput on T4 and +11-89 % on A10 over GPU-only vLLM at
similar latency, on decode-heavy workloads (short prefills, long outputs).

Setup: T4 + Llama-2-7B (fp16 weights leave ~1.4k tokens of KV at 0.95 memory utilisation;
multi-head attention, 512 KiB per token) and A10 + Llama-3.1-8B (~47k tokens); 2,048-token
step budget; host share of each GPU's common server from the catalog (T4: 35.2 GB/s, A10:
102.4 GB/s; CPU attention at half of it), 32 GiB of host KV. Workload: decode-heavy synthetic
requests (prompts lognormal mean 512, outputs mean 1,024 tokens, sigma 0.5), Poisson arrivals.
Three engines: ``gpu-only`` (vLLM: no host KV), ``hybrid`` (host KV, requests spill to it
whenever it has room: no prediction) and ``apex`` (host KV with the ``apex`` dispatch policy).

Reproduce (about 30 seconds on 2 cores):

    .venv/bin/python experiments/numerics_offload.py
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import Timer, fmt, markdown, ms, save
from fleetsched.core.config import Scenario
from fleetsched.sweep import run_many

SETUPS = {
    "T4": ("Llama-2-7B", 0.95, "0.02,0.03,0.05,0.1"),
    "A10": ("Llama-3.1-8B", 0.9, "0.4,0.8,1.2,1.6"),
}
ENGINES: list[tuple[str, dict[str, Any] | None, str]] = [
    ("gpu-only", None, "aggressive"),
    ("hybrid", {"host_kv_gib": 32}, "aggressive"),
    ("apex", {"host_kv_gib": 32}, "apex"),
]


def scenario(gpu: str, rate: float, offload: dict[str, Any] | None, adm: str, a: Any) -> Scenario:
    model, gmu, _ = SETUPS[gpu]
    return Scenario.model_validate(
        {
            "name": f"{gpu}@{rate:g}",
            "seed": 0,
            "workload": {
                "synthetic": {
                    "num_requests": a.requests,
                    "arrival": {"rate": rate},
                    "prompt": {"kind": "lognormal", "mean": 512, "sigma": 0.5, "max": 4096},
                    "output": {"kind": "lognormal", "mean": 1024, "sigma": 0.5, "max": 4096},
                }
            },
            "cluster": [
                {
                    "gpu": gpu,
                    "model": model,
                    "engine": {"gpu_memory_utilization": gmu, "max_num_batched_tokens": 2048},
                    "offload": offload,
                }
            ],
            "policies": {"admission": {"name": adm}},
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    grid = [
        (gpu, float(r), e)
        for gpu, (_, _, rates) in SETUPS.items()
        for r in rates.split(",")
        for e in ENGINES
    ]
    with Timer():
        out = run_many([scenario(g, r, e[1], e[2], a) for g, r, e in grid], jobs=a.jobs)
    data: dict[str, Any] = {"config": vars(a), "runs": {}}
    base = {
        (g, r): s["throughput_tok_s"]
        for (g, r, e), s in zip(grid, out, strict=True)
        if e[0] == "gpu-only"
    }
    rows = []
    for (g, r, e), s in zip(grid, out, strict=True):
        data["runs"][f"{g}@{r:g}/{e[0]}"] = s
        rows.append(
            [
                f"{g} ({SETUPS[g][0]})",
                f"{r:g}",
                e[0],
                fmt(s["throughput_tok_s"], 1),
                fmt(s["throughput_tok_s"] / base[(g, r)]) + "x",
                ms(s["ttft_s"]["p50"]),
                ms(s["tpot_s"]["p50"]),
                ms(s["tpot_s"]["p99"]),
                str(s["preemptions"]),
            ]
        )
    table = f"Decode-heavy synthetic workload, {a.requests} requests per run\n\n" + markdown(
        [
            "GPU (model)",
            "rate req/s",
            "engine",
            "output tok/s",
            "vs gpu-only",
            "TTFT p50 ms",
            "TPOT p50 ms",
            "TPOT p99 ms",
            "preemptions",
        ],
        rows,
    )
    save("numerics_offload", data, table)


if __name__ == "__main__":
    main()
