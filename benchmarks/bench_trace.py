"""Trace statistics speed: `fleetsched trace info` on the Mooncake conversation trace
(12,031 rows, target < 2 s), against a baseline in the same process that only parses the JSON
lines (the least any reader must do).

    python benchmarks/bench_trace.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fleetsched.workload import load_trace, trace_stats

TRACE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "traces"
    / "mooncake_fast25"
    / "conversation_trace.jsonl"
)


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    if not TRACE.exists():
        print(f"skipped: {TRACE} not found")
        return

    def baseline() -> None:
        with TRACE.open() as f:
            for line in f:
                json.loads(line)

    def stats() -> None:
        trace_stats(load_trace(TRACE))

    b = best_of(baseline)
    s = best_of(stats)
    print(
        f"trace stats, Mooncake conversation trace (12,031 rows): {s:.3f} s "
        f"(target < 2 s: {'ok' if s < 2 else 'MISSED'}); json.loads alone {b:.3f} s; "
        f"ratio {s / b:.1f}x"
    )


if __name__ == "__main__":
    main()
