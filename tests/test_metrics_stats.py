"""Tests of fleetsched.metrics.stats: percentiles, dist_summary, Jain's index, CoV."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetsched.metrics.stats import (
    coefficient_of_variation,
    dist_summary,
    jain_index,
    percentiles,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
nonneg = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_percentiles_small_known_values():
    got = percentiles(np.array([1.0, 2.0, 3.0, 4.0]), qs=(0, 50, 100, 25))
    assert got == {"p0": 1.0, "p50": 2.5, "p100": 4.0, "p25": 1.75}


def test_percentiles_default_keys_and_fractional_q():
    assert list(percentiles(np.arange(10.0))) == ["p50", "p90", "p95", "p99"]
    assert list(percentiles(np.arange(10.0), qs=(99.9,))) == ["p99.9"]


def test_percentiles_ignore_nan_and_empty_is_nan():
    assert percentiles(np.array([np.nan, 1.0, np.nan, 3.0]), qs=(50,)) == {"p50": 2.0}
    for values in (np.array([]), np.array([np.nan, np.nan])):
        got = percentiles(values)
        assert len(got) == 4 and all(math.isnan(v) for v in got.values())


@given(
    st.lists(st.one_of(finite, st.just(math.nan)), max_size=60),
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=5),
)
def test_percentiles_match_numpy_after_dropping_nan(values, qs):
    got = percentiles(np.array(values, dtype=float), qs=tuple(qs))
    clean = np.array([v for v in values if not math.isnan(v)], dtype=float)
    for q in qs:
        key = f"p{q:g}"
        if clean.size == 0:
            assert math.isnan(got[key])
        else:
            assert got[key] == float(np.percentile(clean, q))


def test_dist_summary_known_values():
    got = dist_summary([4.0, 1.0, np.nan, 3.0, 2.0])
    assert list(got) == ["mean", "p50", "p90", "p95", "p99", "max"]
    assert got["mean"] == 2.5
    assert got["p50"] == 2.5
    assert got["p90"] == pytest.approx(3.7)
    assert got["max"] == 4.0
    assert all(isinstance(v, float) for v in got.values())


def test_dist_summary_empty_is_all_nan():
    got = dist_summary(np.array([]))
    assert set(got) == {"mean", "p50", "p90", "p95", "p99", "max"}
    assert all(math.isnan(v) for v in got.values())


def test_jain_known_values():
    assert jain_index([1, 1, 1, 1]) == 1.0
    assert jain_index([1, 0, 0, 0]) == 0.25
    assert jain_index([5.0]) == 1.0
    # (1+3)^2 / (2 * (1+9)) = 16/20
    assert jain_index([1, 3]) == pytest.approx(0.8)


def test_jain_degenerate_inputs():
    assert jain_index([]) == 1.0
    assert jain_index([0, 0, 0]) == 1.0
    assert jain_index([2.0, math.nan, 2.0]) == 1.0  # NaN ignored
    with pytest.raises(ValueError):
        jain_index([1.0, -1.0])


@given(st.lists(nonneg, min_size=1, max_size=50))
def test_jain_bounds(xs):
    j = jain_index(xs)
    assert 1.0 / len(xs) <= j <= 1.0


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=1e-6, max_value=1e6))
def test_jain_equal_is_one_and_one_hot_is_one_over_n(n, x):
    assert jain_index([x] * n) == pytest.approx(1.0)
    assert jain_index([x] + [0.0] * (n - 1)) == pytest.approx(1.0 / n)


def test_cov_known_values():
    assert coefficient_of_variation([1, 1, 1]) == 0.0
    assert coefficient_of_variation([1, 3]) == pytest.approx(0.5)  # std 1 / mean 2
    # population std of [0, 0, 6] is sqrt(8), mean 2
    assert coefficient_of_variation([0, 0, 6]) == pytest.approx(math.sqrt(8) / 2)


def test_cov_zero_mean_and_empty():
    assert coefficient_of_variation([0, 0, 0]) == 0.0
    assert coefficient_of_variation([]) == 0.0
    assert coefficient_of_variation([1.0, math.nan, 3.0]) == pytest.approx(0.5)


@given(
    st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e6)), min_size=1, max_size=30),
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_cov_scale_invariant(xs, k):
    base = coefficient_of_variation(xs)
    assert coefficient_of_variation([k * x for x in xs]) == pytest.approx(base, abs=1e-9)
