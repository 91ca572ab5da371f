"""Numerics (c): the throughput cost of a determinism-required traffic class (issue 19, item 3).

LLM-42 (Gond et al., arXiv:2601.17768) compares three ways to make some requests'
outputs independent of their batch: no dynamic batching for them, batch-invariant kernels for
everything (SGLang's deterministic mode: 0.64-0.72x its normal throughput in the paper's
offline figure), and its verified speculation (decode fast, verify in fixed-shape passes, roll
back on mismatch), whose cost grows with the share of deterministic traffic (about 0.99x at
2-10 %, 0.92x at 50 %, 0.84x at 100 % of SGLang's throughput on its ArXiv workload; "over 94 %
throughput even with up to 50 % deterministic traffic").

Setup: one H100-SXM serving Llama-3.1-8B, synthetic requests (prompts lognormal mean 1,000,
outputs mean 250) from two tenants, one of which needs determinism (``deterministic: true``);
its share of the traffic is varied. Saturated (arrivals at ``--rate``, above capacity), so
output tokens/s is the engine's throughput; each way is compared with the same workload served
without determinism (``mode: none``). LLM-42 defaults: window 32 tokens, groups of 8 windows,
5 % of windows mismatched (assumed).

Reproduce (about a minute on 2 cores):

    .venv/bin/python experiments/numerics_determinism.py
"""

from __future__ import annotations

import argparse
from typing import Any

from _common import Timer, fmt, markdown, ms, save
from fleetsched.core.config import Scenario
from fleetsched.sweep import run_many

MODES = ["none", "no_batching", "batch_invariant", "llm42"]


def scenario(share: float, mode: str, a: Any) -> Scenario:
    tenants = []
    if share < 1:
        tenants.append({"name": "plain", "weight": 1 - share})
    if share > 0:
        tenants.append({"name": "audit", "weight": share, "deterministic": True})
    return Scenario.model_validate(
        {
            "name": f"det{share:g}/{mode}",
            "seed": 0,
            "workload": {
                "synthetic": {
                    "num_requests": a.requests,
                    "arrival": {"rate": a.rate},
                    "prompt": {"kind": "lognormal", "mean": 1000, "sigma": 0.8},
                    "output": {"kind": "lognormal", "mean": 250, "sigma": 0.8},
                    "tenants": tenants,
                }
            },
            "cluster": [
                {"gpu": a.gpu, "model": "Llama-3.1-8B", "engine": {"determinism": {"mode": mode}}}
            ],
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=60.0, help="req/s (saturating)")
    ap.add_argument("--gpu", default="H100-SXM")
    ap.add_argument("--shares", default="0.02,0.1,0.2,0.5,1.0")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    shares = [float(x) for x in a.shares.split(",")]
    grid = [(s, m) for s in shares for m in MODES]
    with Timer():
        out = run_many([scenario(s, m, a) for s, m in grid], jobs=a.jobs)
    data: dict[str, Any] = {"config": vars(a), "runs": {}}
    base = {s: r["throughput_tok_s"] for (s, m), r in zip(grid, out, strict=True) if m == "none"}
    rows = []
    for (s, m), r in zip(grid, out, strict=True):
        data["runs"][f"{s:g}/{m}"] = r
        if m == "none":
            continue
        rows.append(
            [
                f"{s:.0%}",
                m,
                fmt(r["throughput_tok_s"], 0),
                fmt(r["throughput_tok_s"] / base[s], 3) + "x",
                ms(r["tpot_s"]["p50"]),
                ms(r["ttft_s"]["p50"]),
            ]
        )
    table = (
        f"1 x {a.gpu}, Llama-3.1-8B, {a.requests} requests at {a.rate:g} req/s (saturated); "
        "throughput relative to the same workload without determinism\n\n"
    )
    table += markdown(
        ["deterministic share", "way", "output tok/s", "vs none", "TPOT p50 ms", "TTFT p50 ms"],
        rows,
    )
    save("numerics_determinism", data, table)


if __name__ == "__main__":
    main()
