"""Transforms and build_workload."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import SyntheticConfig, TransformConfig, WorkloadConfig
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.workload import apply_transforms, build_workload, generate, write_jsonl


def _reqs(times: list[float], deadline: float | None = None) -> list[Request]:
    return [
        Request(
            id=100 + i,
            arrival_s=t,
            prompt_tokens=10 + i,
            output_tokens=1,
            deadline_s=None if deadline is None else t + deadline,
        )
        for i, t in enumerate(times)
    ]


def test_identity_renumbers_ids() -> None:
    out = list(apply_transforms(_reqs([0.0, 1.0, 2.0]), TransformConfig()))
    assert [r.id for r in out] == [0, 1, 2]
    assert [r.arrival_s for r in out] == [0.0, 1.0, 2.0]


def test_window_rebases_and_rate_scale_divides() -> None:
    src = _reqs([0.0, 5.0, 10.0, 15.0, 20.0, 25.0], deadline=4.0)
    cfg = TransformConfig(start_s=10.0, end_s=25.0, rate_scale=2.0)
    out = list(apply_transforms(src, cfg))
    assert [r.arrival_s for r in out] == [0.0, 2.5, 5.0]  # (t - 10) / 2 for t in 10, 15, 20
    assert [r.prompt_tokens for r in out] == [12, 13, 14]
    assert [r.id for r in out] == [0, 1, 2]
    assert [r.deadline_s for r in out] == [2.0, 4.5, 7.0]  # absolute times move with arrivals
    assert src[2].arrival_s == 10.0 and src[2].id == 102  # inputs are not mutated


def test_window_stops_reading_at_end() -> None:
    consumed = []

    def stream():
        for r in _reqs([float(t) for t in range(1000)]):
            consumed.append(r.id)
            yield r

    out = list(apply_transforms(stream(), TransformConfig(end_s=3.0)))
    assert len(out) == 3 and len(consumed) == 4


def test_first_n_stops_early_and_counts_kept_requests() -> None:
    consumed = []

    def stream():
        for r in generate(SyntheticConfig(num_requests=100_000), 0):
            consumed.append(r.id)
            yield r

    out = list(apply_transforms(stream(), TransformConfig(first_n=50, sample=0.5), seed=3))
    assert len(out) == 50 and [r.id for r in out] == list(range(50))
    assert len(consumed) < 200


@settings(max_examples=10, deadline=None)
@given(p=st.floats(0.05, 1.0), seed=st.integers(0, 2**31))
def test_sample_keeps_the_requested_fraction(p: float, seed: int) -> None:
    n = 5000
    src = _reqs([i * 0.01 for i in range(n)])
    out = list(apply_transforms(src, TransformConfig(sample=p), seed))
    assert abs(len(out) - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9
    again = list(apply_transforms(src, TransformConfig(sample=p), seed))
    assert [r.prompt_tokens for r in out] == [r.prompt_tokens for r in again]
    assert [r.id for r in out] == list(range(len(out)))


def test_sample_seeds_differ() -> None:
    src = _reqs([i * 0.01 for i in range(1000)])
    a = [r.prompt_tokens for r in apply_transforms(src, TransformConfig(sample=0.5), 1)]
    b = [r.prompt_tokens for r in apply_transforms(src, TransformConfig(sample=0.5), 2)]
    assert a != b


def test_bad_window_and_unsorted_stream() -> None:
    with pytest.raises(InputError, match=r"start_s \(5.0\) must be < end_s \(5.0\)"):
        apply_transforms([], TransformConfig(start_s=5, end_s=5))
    with pytest.raises(InputError, match="not sorted by arrival time: request id 101"):
        list(apply_transforms(_reqs([2.0, 1.0]), TransformConfig()))


def test_build_workload_from_trace_and_synthetic(tmp_path: Path) -> None:
    syn = SyntheticConfig(num_requests=300)
    p = tmp_path / "t.jsonl"
    write_jsonl(generate(syn, 5), p)
    tcfg = TransformConfig(rate_scale=4.0, first_n=100)
    from_trace = list(build_workload(WorkloadConfig(trace=str(p), transforms=tcfg), seed=5))
    from_syn = list(build_workload(WorkloadConfig(synthetic=syn, transforms=tcfg), seed=5))
    assert from_trace == from_syn
    assert len(from_syn) == 100 and [r.id for r in from_syn] == list(range(100))
    orig = list(generate(syn, 5))[:100]
    assert [r.arrival_s for r in from_syn] == [r.arrival_s / 4.0 for r in orig]


def test_build_workload_length_only_trace_uses_generated_rate(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text(
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n"
        + "".join(f"{10 + i},{5},{15 + i},2.0\n" for i in range(2000))
    )
    out = list(build_workload(WorkloadConfig(trace=str(p), generated_rate=50.0), seed=0))
    assert len(out) == 2000
    assert abs((len(out) - 1) / out[-1].arrival_s / 50 - 1) < 5 / math.sqrt(1999)
