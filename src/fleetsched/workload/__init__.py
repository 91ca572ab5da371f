"""Workloads: trace loaders and synthetic generators that yield :class:`Request` streams.

Everything here streams (iterators), so a million-request trace stays in bounded memory.
"""

from fleetsched.workload.loaders import FORMATS, detect_format, generates_arrivals, load_trace
from fleetsched.workload.native import read_jsonl, write_jsonl
from fleetsched.workload.stats import trace_stats
from fleetsched.workload.synthetic import arrival_times, generate, length_sampler
from fleetsched.workload.transforms import apply_transforms, build_workload

__all__ = [
    "FORMATS",
    "apply_transforms",
    "arrival_times",
    "build_workload",
    "detect_format",
    "generate",
    "generates_arrivals",
    "length_sampler",
    "load_trace",
    "read_jsonl",
    "trace_stats",
    "write_jsonl",
]
