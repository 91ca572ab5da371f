"""Keep a report small whatever the run's size: CDFs on a quantile grid, time series in bins.

- **CDF** (:func:`cdf_points`): up to ``max_points`` values are drawn exactly (the empirical
  CDF at each value). Beyond that the curve is drawn at fixed quantile levels: every 1 % from
  0 to 99 %, then levels spaced evenly in ``log10(1 - q)`` from 99 % to ``1 - 1/n`` (so
  p99.9, p99.99... are drawn as far as the data resolves them) and the maximum. 20k or 20M
  requests give the same ~200 points, and the tail, where policies differ, keeps detail.
- **Time series** (:func:`time_bins`, :func:`binned_mean`): at most ``max_bins`` bins of a
  "nice" width (1, 2 or 5 x 10^k seconds, never narrower than the sampling interval); each
  bin holds the mean of the values (request latencies by arrival time, or samples) that fall
  in it, NaN when none does.
"""

from __future__ import annotations

import math

import numpy as np

#: Points per CDF curve above which the quantile grid is used.
CDF_POINTS = 200
#: Bins of a time axis at most.
TIME_BINS = 240


def quantile_levels(n: int, max_points: int = CDF_POINTS) -> np.ndarray:
    """The quantile grid for ``n`` values: 0..0.99 by 0.01, a log-spaced tail, then 1."""
    body = np.arange(100) / 100.0
    tail_points = max(max_points - body.size - 1, 1)
    deepest = max(math.log10(max(n, 100)), 2.0)  # 1 - q down to 1/n
    tail = 1.0 - np.logspace(-2.0, -deepest, tail_points + 1)[1:]
    return np.unique(np.concatenate([body, tail, [1.0]]))


def cdf_points(values: np.ndarray, max_points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, P[X <= x]) of the finite ``values``, at most ~``max_points`` points."""
    v = np.asarray(values, dtype=np.float64)
    v = np.sort(v[np.isfinite(v)])
    n = v.size
    if n == 0:
        return v, v
    if n <= max_points:
        return v, np.arange(1, n + 1) / n
    q = quantile_levels(n, max_points)
    return np.quantile(v, q, method="inverted_cdf"), q


def nice_width(raw: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= ``raw`` (> 0)."""
    if not raw > 0:
        return 1.0
    exp = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        w = m * 10.0**exp
        if w >= raw * (1 - 1e-12):
            return w
    return 10.0 ** (exp + 1)  # pragma: no cover - the loop always returns


def time_bins(
    start: float, end: float, max_bins: int = TIME_BINS, min_width: float = 0.0
) -> np.ndarray:
    """Bin edges covering [start, end] with a nice width, at most ``max_bins`` bins."""
    span = max(end - start, 1e-9)
    w = nice_width(max(span / max_bins, min_width))
    while True:
        lo = math.floor(start / w) * w
        if lo > start:  # float rounding of floor(start / w) * w
            lo -= w
        edges = lo + np.arange(math.floor((end - lo) / w) + 2) * w
        if edges[-2] > end:
            edges = edges[:-1]
        if edges[-1] <= end:  # the last bin must hold ``end``
            edges = np.append(edges, lo + edges.size * w)
        if edges.size - 1 <= max_bins:
            return edges
        w = nice_width(w * 1.0001)


def binned_mean(t: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (shape (n,) or (n, k)) whose time ``t`` falls in each bin
    ``[edges[i], edges[i+1])``; NaN for bins without a finite value. Shape (bins,) or
    (bins, k)."""
    t = np.asarray(t, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    two_d = vals.ndim == 2
    if not two_d:
        vals = vals[:, None]
    bins = edges.size - 1
    idx = np.searchsorted(edges, t, side="right") - 1
    ok = (idx >= 0) & (idx < bins)
    out = np.full((bins, vals.shape[1]), np.nan)
    for j in range(vals.shape[1]):
        col = vals[:, j]
        good = ok & np.isfinite(col)
        sums = np.bincount(idx[good], weights=col[good], minlength=bins)
        counts = np.bincount(idx[good], minlength=bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out if two_d else out[:, 0]


def occupancy(starts: np.ndarray, ends: np.ndarray, times: np.ndarray) -> np.ndarray:
    """How many intervals ``[starts[i], ends[i])`` contain each of ``times`` (an interval
    with a NaN end is open: it never ends)."""
    s = np.sort(np.asarray(starts, dtype=np.float64))
    e = np.asarray(ends, dtype=np.float64)
    e = np.sort(np.where(np.isnan(e), np.inf, e))
    return np.searchsorted(s, times, side="right") - np.searchsorted(e, times, side="right")
