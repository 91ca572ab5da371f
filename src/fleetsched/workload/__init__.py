"""Workloads: trace loaders and synthetic generators that yield :class:`Request` streams.

Everything here streams (iterators), so a million-request trace stays in bounded memory.
"""

from fleetsched.workload.loaders import FORMATS, detect_format, generates_arrivals, load_trace
from fleetsched.workload.native import read_jsonl, write_jsonl
from fleetsched.workload.stats import trace_stats
from fleetsched.workload.synthetic import arrival_times, generate, length_sampler
from fleetsched.workload.transforms import (
    apply_transforms,
    apply_workflow_transforms,
    build_workflows,
    build_workload,
    is_workflow_workload,
)
from fleetsched.workload.workflow_gen import generate_workflows
from fleetsched.workload.workflows import Call, Workflow, read_workflows, write_workflows

__all__ = [
    "FORMATS",
    "Call",
    "Workflow",
    "apply_transforms",
    "apply_workflow_transforms",
    "arrival_times",
    "build_workflows",
    "build_workload",
    "detect_format",
    "generate",
    "generate_workflows",
    "generates_arrivals",
    "is_workflow_workload",
    "length_sampler",
    "load_trace",
    "read_jsonl",
    "read_workflows",
    "trace_stats",
    "write_jsonl",
    "write_workflows",
]
