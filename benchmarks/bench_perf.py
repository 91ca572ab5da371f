"""Step-time model cost: ``step_time`` and ``decode_step_times`` calls, CPU time per call.

The roofline (calibrated, Llama-3.1-8B on H100) is the simulator's hot path; the baseline,
measured in the same run, is a fitted linear profile (``FittedProfile``: four multiply-adds,
the cheapest model the engine accepts). Each figure is the best of 5 repeats of ``--calls``
calls, in CPU seconds (``time.process_time``). Target: a roofline call within 3x the profile.

    python benchmarks/bench_perf.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from fleetsched.perf import FittedProfile, RooflineModel, get_gpu, get_model

TARGET_RATIO = 3.0


def per_call_ns(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, time.process_time() - t0)
    return best / calls * 1e9


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    a = ap.parse_args()
    roofline = RooflineModel(get_gpu("H100-SXM"), get_model("Llama-3.1-8B"))
    profile = FittedProfile(
        model="Llama-3.1-8B",
        gpu="H100-SXM",
        c0_s=0.006,
        prefill_token_s=1.7e-5,
        prefill_pair_s=5e-10,
        decode_token_s=1.7e-5,
        decode_ctx_token_s=4e-8,
    )
    ctx = np.arange(64) * 32 + 31_000
    print(f"step-time model cost, CPU ns per call (best of 5 x {a.calls:,} calls)")
    print(f"{'call':>34} {'roofline':>9} {'profile':>9} {'ratio':>6}")
    worst = 0.0
    cases = (
        ("step_time, mixed step", lambda m: lambda: m.step_time(512, 131_328.0, 31, 31_000)),
        ("step_time, decode-only step", lambda m: lambda: m.step_time(0, 0.0, 31, 31_000)),
        ("decode_step_times, 64 steps", lambda m: lambda: m.decode_step_times(31, ctx)),
    )
    for name, make in cases:
        calls = a.calls if "64" not in name else a.calls // 10
        r = per_call_ns(make(roofline), calls)
        p = per_call_ns(make(profile), calls)
        worst = max(worst, r / p)
        print(f"{name:>34} {r:>9.0f} {p:>9.0f} {r / p:>5.2f}x")
    ok = worst <= TARGET_RATIO
    print(f"worst ratio {worst:.2f}x (target <= {TARGET_RATIO:g}x): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
