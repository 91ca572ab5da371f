"""Small NaN-aware statistics used by the summaries.

Every function takes anything ``numpy.asarray`` accepts and returns plain Python floats.
NaN marks a missing value (an unset timestamp) and is ignored; an empty input yields NaN
where a statistic is undefined. See ``docs/metrics.md`` for the exact definitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

NAN = math.nan

#: Percentiles reported by :func:`dist_summary`.
SUMMARY_QS: tuple[float, ...] = (50, 90, 95, 99)

#: Keys of a :func:`dist_summary` dict, in display order.
DIST_KEYS: tuple[str, ...] = ("mean", "p50", "p90", "p95", "p99", "max")


def _finite_or_nan(values: ArrayLike) -> np.ndarray:
    """1-D float64 copy of ``values`` with NaN removed (infinities are kept)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    return a[~np.isnan(a)]


def pct_key(q: float) -> str:
    """Key of percentile ``q``: ``50 -> "p50"``, ``99.9 -> "p99.9"``."""
    return f"p{q:g}"


def percentiles(values: ArrayLike, qs: Sequence[float] = SUMMARY_QS) -> dict[str, float]:
    """Percentiles of ``values`` ignoring NaN, keyed ``"p50"``, ``"p99"``, ….

    Uses numpy's default (linear interpolation between closest ranks). With no
    non-NaN value every percentile is NaN.
    """
    a = _finite_or_nan(values)
    if a.size == 0:
        return {pct_key(q): NAN for q in qs}
    got = np.percentile(a, np.asarray(qs, dtype=np.float64))
    return {pct_key(q): float(v) for q, v in zip(qs, np.atleast_1d(got), strict=True)}


def nanmean(values: ArrayLike) -> float:
    """Mean ignoring NaN; NaN when nothing is left (no warning)."""
    a = _finite_or_nan(values)
    return float(a.mean()) if a.size else NAN


def dist_summary(values: ArrayLike) -> dict[str, float]:
    """``{"mean","p50","p90","p95","p99","max"}`` of ``values`` ignoring NaN (all NaN if empty)."""
    a = _finite_or_nan(values)
    if a.size == 0:
        return dict.fromkeys(DIST_KEYS, NAN)
    out = {"mean": float(a.mean())}
    out.update(percentiles(a, SUMMARY_QS))
    out["max"] = float(a.max())
    return out


def jain_index(xs: ArrayLike) -> float:
    """Jain's fairness index ``(Σx)² / (n·Σx²)`` of non-negative ``xs``, ignoring NaN.

    Lies in ``[1/n, 1]``: 1 when all values are equal, ``1/n`` when one value takes all.
    By convention an empty input or all zeros (nothing to share unfairly) gives 1.0.
    Raises ``ValueError`` on a negative value.
    """
    a = _finite_or_nan(xs)
    if a.size == 0:
        return 1.0
    if (a < 0).any():
        raise ValueError("jain_index needs non-negative values")
    sq = float(np.dot(a, a))
    if sq == 0.0:
        return 1.0
    s = float(a.sum())
    # Clip rounding noise so the documented bounds hold exactly.
    return min(1.0, max(1.0 / a.size, s * s / (a.size * sq)))


def coefficient_of_variation(xs: ArrayLike) -> float:
    """Population standard deviation / mean of ``xs``, ignoring NaN.

    0.0 when the mean is 0 or the input is empty (no imbalance to measure).
    """
    a = _finite_or_nan(xs)
    if a.size == 0:
        return 0.0
    mean = float(a.mean())
    if mean == 0.0:
        return 0.0
    return float(a.std()) / abs(mean)
