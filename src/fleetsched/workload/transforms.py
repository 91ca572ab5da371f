"""Stream transforms (:class:`~fleetsched.core.config.TransformConfig`) and :func:`build_workload`.

Transforms apply in this order, each lazily:

1. time window: keep ``start_s <= arrival_s < end_s`` (trace time, before scaling) and shift
   times so the window starts at 0 (``arrival_s - start_s``);
2. ``rate_scale``: divide times by it (2.0 = twice the request rate);
3. ``sample``: keep each request with that probability (seeded Bernoulli);
4. ``first_n``: stop after that many kept requests;
5. ids are renumbered 0..N-1.

``deadline_s`` is an absolute time on the same clock as ``arrival_s`` and is shifted and
scaled with it. The input must be sorted by arrival time (every loader and generator is):
the window stops reading at the first request at or after ``end_s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from fleetsched.core.config import TransformConfig, WorkloadConfig
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.workload.loaders import WORKFLOW_FORMAT, detect_format, load_trace
from fleetsched.workload.synthetic import _Draws, _rng, generate
from fleetsched.workload.workflow_gen import generate_workflows
from fleetsched.workload.workflows import Workflow, read_workflows

#: Mixed into the seed of the sampling stream so it is independent of the generator's streams.
_SAMPLE_STREAM = 0x5A3D_0001


def apply_transforms(
    stream: Iterable[Request], cfg: TransformConfig, seed: int = 0
) -> Iterator[Request]:
    """Apply ``cfg`` to a sorted request stream and renumber ids 0..N-1 (lazily)."""
    _check(cfg, seed)
    return _apply(iter(stream), cfg, seed, True)


def apply_workflow_transforms(
    stream: Iterable[Workflow], cfg: TransformConfig, seed: int = 0
) -> Iterator[Workflow]:
    """Apply ``cfg`` to a sorted workflow stream by start time, renumbering ids 0..N-1.

    ``rate_scale`` divides the start times only: tool gaps and (relative) deadlines are
    properties of the workflow and stay as they are."""
    _check(cfg, seed)
    return _apply(iter(stream), cfg, seed, False)


def _check(cfg: TransformConfig, seed: int) -> None:
    if cfg.start_s is not None and cfg.end_s is not None and cfg.start_s >= cfg.end_s:
        raise InputError(f"transforms: start_s ({cfg.start_s}) must be < end_s ({cfg.end_s})")
    _rng(seed)  # validates the seed now


def _apply(stream: Iterator[Any], cfg: TransformConfig, seed: int, absolute: bool) -> Iterator[Any]:
    start, end, scale = cfg.start_s, cfg.end_s, cfg.rate_scale
    origin = start or 0.0
    keep_p = cfg.sample
    coin = None
    if keep_p is not None and keep_p < 1:
        ss = np.random.SeedSequence([seed, _SAMPLE_STREAM])
        rng = np.random.Generator(np.random.PCG64(ss))
        coin = _Draws(rng.random)
    first_n = cfg.first_n
    replace = dataclasses.replace
    n = 0
    prev = float("-inf")
    for r in stream:
        t = r.arrival_s
        if t < prev:
            raise InputError(
                f"request stream is not sorted by arrival time: request id {r.id} arrives at "
                f"{t} s, before the previous one at {prev} s"
            )
        prev = t
        if start is not None and t < start:
            continue
        if end is not None and t >= end:
            break
        if coin is not None and coin() >= keep_p:
            continue
        new_t = (t - origin) / scale
        if new_t != t or r.id != n:
            if absolute:
                d = r.deadline_s
                if d is not None:
                    d = (d - origin) / scale
                r = replace(r, id=n, arrival_s=new_t, deadline_s=d)
            else:
                r = replace(r, id=n, arrival_s=new_t)
        yield r
        n += 1
        if first_n is not None and n >= first_n:
            return


def is_workflow_workload(cfg: WorkloadConfig) -> bool:
    """Whether the workload is agent workflows (generated, or a workflow trace) rather than a
    request stream."""
    if cfg.workflows is not None:
        return True
    if cfg.trace is None:
        return False
    fmt = cfg.format.lower()
    return (detect_format(cfg.trace) if fmt == "auto" else fmt) == WORKFLOW_FORMAT


def build_workflows(cfg: WorkloadConfig, seed: int = 0) -> Iterator[Workflow]:
    """The workflows a scenario's workload describes (a workflow trace or the generator),
    with its transforms applied to workflow start times and ids 0..N-1."""
    if cfg.workflows is not None:
        stream: Iterable[Workflow] = generate_workflows(cfg.workflows, seed)
    else:
        assert cfg.trace is not None
        stream = read_workflows(cfg.trace)
    return apply_workflow_transforms(stream, cfg.transforms, seed)


def build_workload(cfg: WorkloadConfig, seed: int = 0) -> Iterator[Request]:
    """The request stream a scenario's workload describes: a trace file or a synthetic
    generator, with its transforms applied and ids 0..N-1."""
    if cfg.workflows is not None:
        raise InputError("the workload is agent workflows: use build_workflows")
    if cfg.trace is not None:
        stream = load_trace(cfg.trace, cfg.format, generated_rate=cfg.generated_rate, seed=seed)
    else:
        assert cfg.synthetic is not None  # WorkloadConfig checks exactly one source
        stream = generate(cfg.synthetic, seed)
    return apply_transforms(stream, cfg.transforms, seed)
