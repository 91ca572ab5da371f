"""Compound (c): streamed context (Stream2LLM).

Retrieval-augmented requests whose prompt arrives in pieces (a web crawler: 14 pieces, one
every Exp(0.7 s), ~9 s in all; prompts lognormal, mean 6,000 tokens; answers mean 200 tokens)
on 2 x A10G (Llama-3.1-8B, ~30k tokens of KV each, so a few such prompts fill it). Three
ways to serve them:

* ``whole``: the request is sent once its last piece is there (vLLM today,
  ``stream_prompts: false``);
* ``stream``: sent with its first piece, prefilled as pieces arrive, vLLM's newest-first
  preemption;
* ``stream + stalled``: the same with ``preemption: stream_stalled`` (a stream waiting for its
  next piece gives its memory up first).

TTFT is counted from the request's arrival (its first piece), as the simulator always does,
and also from the moment its context is complete (its last piece): what the user waits for
once retrieval is done, the latency Stream2LLM's overlap hides.

    python experiments/compound_streaming.py            # ~2 min on 2 busy cores
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import Timer, fmt, markdown, save
from fleetsched.core.config import Scenario
from fleetsched.sim.run import simulate
from fleetsched.workload import build_workload

MODES = [
    ("whole", False, "newest"),
    ("stream", True, "newest"),
    ("stream + stalled", True, "stream_stalled"),
]


def scenario(rate: float, n: int, stream: bool, preemption: str) -> Scenario:
    return Scenario.model_validate(
        {
            "name": f"stream-{rate:g}-{stream}-{preemption}",
            "seed": 0,
            "stream_prompts": stream,
            "cluster": [{"gpu": "A10G", "model": "Llama-3.1-8B", "count": 2}],
            "workload": {
                "synthetic": {
                    "num_requests": n,
                    "arrival": {"rate": rate},
                    "prompt": {"kind": "lognormal", "mean": 6000, "sigma": 0.4, "max": 20000},
                    "output": {"kind": "lognormal", "mean": 200, "sigma": 0.5},
                    "streaming": {"chunks": 14, "gap_s": 0.7},
                }
            },
            "policies": {"router": {"name": "least_requests"}, "preemption": {"name": preemption}},
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rates", default="0.2,0.5,0.8")
    a = ap.parse_args()
    rows, data = [], {}
    with Timer():
        for rate in (float(x) for x in a.rates.split(",")):
            base = None
            for name, stream, pre in MODES:
                sc = scenario(rate, a.requests, stream, pre)
                complete = {
                    r.id: r.arrival_s + (r.prompt_chunks[-1][0] if r.prompt_chunks else 0.0)
                    for r in build_workload(sc.workload, sc.seed)
                }
                res = simulate(sc)
                s = res.summary
                after = np.array(
                    [
                        r.first_token_s - complete[r.id]
                        for r in res.records
                        if r.first_token_s == r.first_token_s
                    ]
                )
                p50, p99 = float(np.percentile(after, 50)), float(np.percentile(after, 99))
                if base is None:
                    base = p50
                data[f"{name}@{rate:g}"] = {**s, "ttft_after_context_s": {"p50": p50, "p99": p99}}
                rows.append(
                    [
                        f"{rate:g}",
                        name,
                        fmt(s["ttft_s"]["p50"], 2),
                        fmt(s["ttft_s"]["p99"], 2),
                        fmt(p50, 3),
                        fmt(p99, 3),
                        f"{base / p50:.1f}x",
                        fmt(s["e2e_s"]["p99"], 1),
                        f"{s['throughput_tok_s']:,.0f}",
                        str(s["preemptions"]),
                    ]
                )
    head = [
        "req/s",
        "mode",
        "TTFT p50 s",
        "TTFT p99 s",
        "after context p50 s",
        "after context p99 s",
        "p50 gain",
        "E2E p99 s",
        "tokens/s",
        "preemptions",
    ]
    save("compound_streaming", data, markdown(head, rows))


if __name__ == "__main__":
    main()
