"""Downsampling for the report: quantile-grid CDFs, nice time bins, binned means, occupancy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.report.downsample import (
    binned_mean,
    cdf_points,
    nice_width,
    occupancy,
    quantile_levels,
    time_bins,
)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def test_a_small_sample_is_drawn_exactly():
    x, y = cdf_points(np.array([3.0, 1.0, np.nan, 2.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0]  # NaN (unfinished) dropped, sorted
    assert y.tolist() == [0.25, 0.5, 0.75, 1.0]


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=201, max_size=3000))
def test_a_large_sample_is_drawn_at_quantile_levels(values):
    v = np.array(values)
    x, q = cdf_points(v)
    assert x.size == q.size <= 201
    assert (np.diff(q) > 0).all() and q[0] == 0.0 and q[-1] == 1.0
    assert (np.diff(x) >= 0).all() and x[-1] == v.max() and x[0] == v.min()
    # Each point is the smallest sample value whose empirical CDF reaches its level.
    s = np.sort(v)
    for xi, qi in zip(x, q, strict=True):
        assert (s <= xi).mean() >= qi - 1e-12
        assert (s < xi).mean() < qi + 1e-9 or qi == 0.0


def test_the_grid_resolves_the_tail_as_far_as_the_data_does():
    q = quantile_levels(20_000)
    assert q.size == 200
    assert np.isclose(q[-2], 1 - 1 / 20_000)  # p99.995
    assert {0.5, 0.9, 0.99}.issubset(set(np.round(q, 10).tolist()))
    assert (q[q > 0.99].size) == 100  # half the points are in the last percent


@pytest.mark.parametrize(
    ("raw", "nice"),
    [(0.3, 0.5), (1.0, 1.0), (1.01, 2.0), (7.0, 10.0), (0.0012, 0.002), (250.0, 500.0)],
)
def test_nice_widths(raw, nice):
    assert nice_width(raw) == pytest.approx(nice)


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(0, 1e5),
    span=st.floats(1e-3, 1e5),
    max_bins=st.integers(1, 500),
    min_width=st.sampled_from([0.0, 0.1, 1.0, 7.0]),
)
def test_time_bins_cover_the_span_with_nice_widths(start, span, max_bins, min_width):
    end = start + span
    e = time_bins(start, end, max_bins, min_width)
    w = e[1] - e[0]
    assert 1 <= e.size - 1 <= max_bins
    assert e[0] <= start and end < e[-1] + 1e-9 * max(1.0, end)
    mantissa = w / 10 ** np.floor(np.log10(w * (1 + 1e-6)))
    assert w >= min_width * (1 - 1e-9)
    tol = 1e-9 + 10 * np.spacing(end) / w  # edges far from 0 carry float rounding
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < tol  # 1, 2 or 5 x 10^k
    assert np.allclose(np.diff(e), w)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.one_of(finite, st.just(float("nan")))), max_size=60))
def test_binned_mean_is_the_mean_per_bin(pairs):
    t = np.array([p[0] for p in pairs], dtype=float)
    v = np.array([p[1] for p in pairs], dtype=float)
    edges = np.arange(0.0, 11.0, 2.0)  # [0,2) .. [8,10); 10 itself is outside
    got = binned_mean(t, v, edges)
    for i in range(edges.size - 1):
        inside = [b for a, b in pairs if edges[i] <= a < edges[i + 1] and b == b]
        if inside:
            assert got[i] == pytest.approx(np.mean(inside), rel=1e-9, abs=1e-6)
        else:
            assert np.isnan(got[i])
    two = binned_mean(t, np.stack([v, 2 * v], axis=1), edges)
    assert two.shape == (edges.size - 1, 2)
    np.testing.assert_allclose(two[:, 1], 2 * got, rtol=1e-9, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 10), st.one_of(st.floats(0, 5), st.just(float("nan")))),
        max_size=40,
    ),
    st.lists(st.floats(0, 16), min_size=1, max_size=20),
)
def test_occupancy_counts_the_intervals_holding_each_time(intervals, times):
    starts = np.array([a for a, _ in intervals], dtype=float)
    ends = np.array([a + d for a, d in intervals], dtype=float)  # NaN: never ends
    got = occupancy(starts, ends, np.array(times))
    for t, n in zip(times, got, strict=True):
        want = sum(1 for s, e in zip(starts, ends, strict=True) if s <= t and not (e <= t))
        assert n == want
