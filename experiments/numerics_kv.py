"""Numerics (a): KV quantisation, weight/activation quantisation and KV compression as
capacity knobs (issue 19, item 1).

(a) What each precision does to one GPU, analytically: KV blocks, a decode step and a prefill
    step of Llama-3.1-8B on H100-SXM and A100-80GB (``fleetsched.perf``, no simulation).
(b) COMET (Liu et al., arXiv:2410.12168) claims a 2.88x kernel-level speedup of its W4A4 GEMM
    over cuBLAS on A100 and 2.02x end-to-end throughput over TensorRT-LLM: the model's W4A4 vs
    BF16 linear layers over token counts, and simulated saturated throughput of W4A4KV4 against
    bf16, W4A16 (weight-only, TensorRT-LLM's int4 mode) and W4A8KV4 (QServe).
(c) Is KV quantisation cheaper than another GPU? bf16 vs fp8 KV: the highest Poisson rate one
    instance serves with >= 90 % of requests within TTFT <= 2 s and TPOT <= 100 ms (bisection,
    ``sweep.capacity_search``) and the GPUs a fleet needs for a target rate; the ``plan``
    command answers the same for a fleet (README, ``scenarios/sharegpt_60rps_*``). H100 runs
    fp8 attention (dequant overhead 0.45), A100 dequantises
    in the kernel (overhead 1.0).
(d) Tangram (Kim et al., arXiv:2606.06302) claims up to 2.6x end-to-end throughput over full KV
    for multi-turn serving with non-uniform compression on its layout: full KV vs ``paged`` vs
    ``tangram`` at ratio 0.3 (Tangram's example ``--compression-ratio``), saturated throughput
    and capacity under the SLO, on multi-turn chat where the history stays in the prefix cache
    only while KV memory lasts.

Workloads: Vidur's ShareGPT length trace (prompts 2.3k, outputs 440 tokens on average, Poisson
arrivals, the first ``--requests`` rows) for (b)-(c); for (d) synthetic multi-turn sessions (8
turns on average, each new message lognormal mean 1,500 tokens, outputs mean 300, 30 s think
time; later turns extend the earlier prompt, so the history is a cacheable prefix), ``--requests``
requests.

Reproduce (about 2 minutes on 2 cores):

    .venv/bin/python experiments/numerics_kv.py
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from _common import Timer, fmt, length_trace_scenario, markdown, ms, pct, save
from fleetsched.core.config import Scenario
from fleetsched.perf import (
    KVCompression,
    Precision,
    RooflineModel,
    get_gpu,
    get_model,
    kv_capacity_blocks,
)

L8B = get_model("Llama-3.1-8B")

#: (label, precision section of the scenario) for the analytic table.
PRECISIONS: list[tuple[str, dict[str, Any]]] = [
    ("bf16", {}),
    ("KV fp8", {"kv_dtype": "fp8"}),
    ("KV int4", {"kv_dtype": "int4"}),
    ("W4A16", {"weight_dtype": "int4"}),
    ("W8A8-fp8 + KV fp8", {"weight_dtype": "fp8", "activation_dtype": "fp8", "kv_dtype": "fp8"}),
    ("W8A8-int8", {"weight_dtype": "int8", "activation_dtype": "int8"}),
    ("W4A8KV4 (QServe)", {"weight_dtype": "int4", "activation_dtype": "int8", "kv_dtype": "int4"}),
    ("W4A4KV4 (COMET)", {"weight_dtype": "int4", "activation_dtype": "int4", "kv_dtype": "int4"}),
    ("compressed 0.3, paged", {"kv_compression": {"ratio": 0.3}}),
    ("compressed 0.3, tangram", {"kv_compression": {"ratio": 0.3, "layout": "tangram"}}),
]


def to_precision(section: dict[str, Any]) -> Precision:
    c = section.get("kv_compression")
    rest = {k: v for k, v in section.items() if k != "kv_compression"}
    return Precision(**rest, kv_compression=None if c is None else KVCompression(**c))


def analytic() -> tuple[str, dict[str, Any]]:
    rows, data = [], {}
    for gpu_name in ("H100-SXM", "A100-80GB"):
        gpu = get_gpu(gpu_name)
        base = RooflineModel(gpu, L8B)
        for label, section in PRECISIONS:
            q = to_precision(section)
            try:
                m = RooflineModel(gpu, L8B, precision=q)
            except Exception as e:  # a precision this GPU has no tensor cores for
                rows.append([gpu_name, label, "-", "-", "-", "-", str(e).split(" (")[0]])
                continue
            blocks = kv_capacity_blocks(gpu, L8B, precision=q)
            dec = m.step_time(0, 0.0, 64, 64 * 2048)
            pre = m.step_time(4096, 4096 * 4097 / 2, 0, 0)
            data[f"{gpu_name}/{label}"] = {"blocks": blocks, "decode_s": dec, "prefill_s": pre}
            rows.append(
                [
                    gpu_name,
                    label,
                    f"{blocks:,}",
                    f"{blocks * 16 / 1000:,.0f}k",
                    f"{dec * 1e3:.2f} ({base.step_time(0, 0.0, 64, 64 * 2048) / dec:.2f}x)",
                    f"{pre * 1e3:.1f} ({base.step_time(4096, 4096 * 4097 / 2, 0, 0) / pre:.2f}x)",
                    "",
                ]
            )
    head = [
        "GPU",
        "precision",
        "KV blocks",
        "KV tokens",
        "decode 64 x 2k ms (speed-up)",
        "prefill 4,096 ms (speed-up)",
        "note",
    ]
    return markdown(head, rows), data


def comet_kernels() -> tuple[str, dict[str, Any]]:
    gpu = get_gpu("A100-80GB")
    bf16 = RooflineModel(gpu, L8B)
    w4a4 = RooflineModel(gpu, L8B, precision=Precision("int4", "int4"))
    w4a16 = RooflineModel(gpu, L8B, precision=Precision("int4"))
    rows, data = [], {}
    for t in (1, 16, 64, 256, 1024, 4096, 16384):
        a, b, c = (m.linear_time_s(t) for m in (bf16, w4a16, w4a4))
        data[str(t)] = {"bf16_s": a, "w4a16_s": b, "w4a4_s": c}
        rows.append([f"{t:,}", ms(a * 1000), ms(b * 1000), ms(c * 1000), f"{a / c:.2f}x"])
    head = ["tokens", "bf16 us", "W4A16 us", "W4A4 us", "W4A4 vs bf16"]
    return markdown(head, rows), data


def multi_turn(rate: float, gpu: str, a: Any) -> Scenario:
    """Multi-turn chat sessions arriving at ``rate`` sessions/s (see the module docstring)."""
    return Scenario.model_validate(
        {
            "name": f"chat@{rate:g}",
            "seed": 0,
            "workload": {
                "synthetic": {
                    "num_requests": a.requests,
                    "arrival": {"rate": rate},
                    "prompt": {"kind": "lognormal", "mean": 1500, "sigma": 0.5},
                    "output": {"kind": "lognormal", "mean": 300, "sigma": 0.5},
                    "sessions": {"turns_mean": 8, "think_time_s": 30},
                }
            },
            "cluster": [{"gpu": gpu, "model": "Llama-3.1-8B"}],
            "slo_classes": {"default": {"ttft_s": a.ttft, "tpot_s": a.tpot}},
        }
    )


def scenario(trace: str, rate: float, gpu: str, section: dict[str, Any], a: Any) -> Scenario:
    if trace == "chat":
        sc = multi_turn(rate, gpu, a)
    else:
        sc = length_trace_scenario(
            trace, rate, requests=a.requests, gpu=gpu, ttft_s=a.ttft, tpot_s=a.tpot
        )
    d = sc.model_dump()
    d["cluster"][0]["precision"] = section
    return Scenario.model_validate(d)


def _summary(job: tuple[str, float, str, dict[str, Any], Any]) -> dict[str, Any]:
    from fleetsched.sim.run import simulate

    return simulate(scenario(*job)).summary


def _capacity(job: tuple[str, str, dict[str, Any], Any]) -> dict[str, Any]:
    from fleetsched.sim.run import simulate
    from fleetsched.sweep import capacity_search

    trace, gpu, section, a = job
    probes: dict[float, dict[str, Any]] = {}

    def meets(rate: float) -> bool:
        s = simulate(scenario(trace, rate, gpu, section, a)).summary
        probes[rate] = s
        return s["slo_attainment"] >= a.target

    lo, hi = (0.05, 4.0) if trace == "chat" else (0.5, 32.0)
    cap = capacity_search(meets, lo, hi, rel_tol=0.02)
    return {"capacity_rate": cap, "at_capacity": probes[cap]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1500, help="first N rows of each trace")
    ap.add_argument("--ttft", type=float, default=2.0, help="TTFT SLO, s")
    ap.add_argument("--tpot", type=float, default=0.1, help="TPOT SLO, s")
    ap.add_argument("--target", type=float, default=0.9, help="attainment defining capacity")
    ap.add_argument("--fleet-rate", type=float, default=40.0, help="req/s the fleet must serve")
    ap.add_argument("--saturate", type=float, default=32.0, help="req/s of (b)'s ShareGPT")
    ap.add_argument("--saturate-chat", type=float, default=2.0, help="sessions/s of (d)")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    data: dict[str, Any] = {"config": vars(a)}
    with Timer():
        t_a, data["analytic"] = analytic()
        t_k, data["comet_kernels"] = comet_kernels()
        e2e = [
            ("bf16", {}),
            ("W4A16", {"weight_dtype": "int4"}),
            ("W4A8KV4 (QServe)", PRECISIONS[6][1]),
            ("W4A4KV4 (COMET)", PRECISIONS[7][1]),
        ]
        kv = [("bf16 KV", {}), ("fp8 KV", {"kv_dtype": "fp8"})]
        comp = [
            ("full KV", {}),
            ("0.3, paged", {"kv_compression": {"ratio": 0.3}}),
            ("0.3, tangram", {"kv_compression": {"ratio": 0.3, "layout": "tangram"}}),
        ]
        sat_jobs = [("sharegpt", a.saturate, "A100-80GB", s, a) for _, s in e2e]
        sat_jobs += [("chat", a.saturate_chat, "A100-80GB", s, a) for _, s in comp]
        cap_jobs = [("sharegpt", g, s, a) for g in ("H100-SXM", "A100-80GB") for _, s in kv]
        cap_jobs += [("chat", "A100-80GB", s, a) for _, s in comp]
        with ProcessPoolExecutor(a.jobs) as pool:
            sat = list(pool.map(_summary, sat_jobs))
            caps = list(pool.map(_capacity, cap_jobs))

    # (b) end to end
    base_tok = {}
    rows = []
    for (label, _), s in zip(e2e, sat[: len(e2e)], strict=True):
        base_tok[label] = s["throughput_tok_s"]
        data.setdefault("comet_e2e", {})[label] = s
    for label, _ in e2e:
        s = data["comet_e2e"][label]
        rows.append(
            [
                label,
                fmt(s["throughput_tok_s"], 0),
                fmt(s["throughput_tok_s"] / base_tok["bf16"]) + "x",
                fmt(s["throughput_tok_s"] / base_tok["W4A16"]) + "x",
                ms(s["tpot_s"]["p50"]),
                str(s["preemptions"]),
            ]
        )
    t_e = markdown(
        ["precision", "output tok/s", "vs bf16", "vs W4A16", "TPOT p50 ms", "preemptions"],
        rows,
    )
    # (c) capacity and fleet cost
    rows = []
    for (_, gpu, section, _), c in zip(cap_jobs[:4], caps[:4], strict=True):
        label = "fp8 KV" if section else "bf16 KV"
        s = c["at_capacity"]
        n = math.ceil(a.fleet_rate / c["capacity_rate"])
        data.setdefault("kv_capacity", {})[f"{gpu}/{label}"] = c
        rows.append(
            [
                gpu,
                label,
                fmt(c["capacity_rate"]),
                pct(s["slo_attainment"]),
                ms(s["ttft_s"]["p99"]),
                ms(s["tpot_s"]["p99"]),
                str(s["preemptions"]),
                str(n),
            ]
        )
    t_c = markdown(
        [
            "GPU",
            "KV",
            "capacity req/s per GPU",
            "SLO att. there",
            "TTFT p99 ms",
            "TPOT p99 ms",
            "preemptions",
            f"GPUs for {a.fleet_rate:g} req/s",
        ],
        rows,
    )
    # (d) compression
    rows = []
    sat_c = sat[len(e2e) :]
    full_tok = sat_c[0]["throughput_tok_s"]
    full_cap = caps[4]["capacity_rate"]
    for (label, _), s, c in zip(comp, sat_c, caps[4:], strict=True):
        data.setdefault("compression", {})[label] = {"saturated": s, "capacity": c}
        rows.append(
            [
                label,
                fmt(s["throughput_tok_s"], 0),
                fmt(s["throughput_tok_s"] / full_tok) + "x",
                pct(s["prefix_hit_rate"]),
                str(s["preemptions"]),
                fmt(c["capacity_rate"], 3),
                fmt(c["capacity_rate"] / full_cap) + "x",
            ]
        )
    t_d = markdown(
        [
            "KV",
            "saturated output tok/s",
            "vs full KV",
            "prefix hit",
            "preemptions",
            "capacity sessions/s (SLO)",
            "vs full KV",
        ],
        rows,
    )
    slo = f"TTFT <= {a.ttft:g} s and TPOT <= {a.tpot * 1000:g} ms for >= {a.target:.0%}"
    table = (
        "(a) Llama-3.1-8B, one GPU, 0.9 memory utilisation (analytic)\n\n"
        + t_a
        + "\n\n(b1) COMET: the 32 layers' GEMMs of Llama-3.1-8B on A100-80GB (analytic)\n\n"
        + t_k
        + f"\n\n(b2) saturated throughput, 1 x A100-80GB, ShareGPT at {a.saturate:g} req/s, "
        f"{a.requests} requests\n\n"
        + t_e
        + f"\n\n(c) capacity per GPU ({slo}), ShareGPT, Llama-3.1-8B\n\n"
        + t_c
        + f"\n\n(d) KV compression, 1 x A100-80GB, multi-turn chat: saturated at "
        f"{a.saturate_chat:g} sessions/s and capacity ({slo})\n\n" + t_d
    )
    save("numerics_kv", data, table)


if __name__ == "__main__":
    main()
