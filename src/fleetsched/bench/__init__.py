"""``bench``: an open-loop load generator speaking the simulator's language (same workload
inputs, same summary JSON and per-request CSV, plus live-only fields)."""

from fleetsched.bench.report import bench_summary, live_table, write_bench_records
from fleetsched.bench.runner import BenchConfig, BenchRun, Outcome, run_bench

__all__ = [
    "BenchConfig",
    "BenchRun",
    "Outcome",
    "bench_summary",
    "live_table",
    "run_bench",
    "write_bench_records",
]
