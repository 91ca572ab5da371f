"""Validation of policy parameters (bad values raise InputError naming the parameter)."""

from __future__ import annotations

from collections.abc import Mapping

from fleetsched.errors import InputError


def check_rate(value: float, name: str) -> float:
    """A non-negative number."""
    if not value >= 0:
        raise InputError(f"{name} must be >= 0, got {value}")
    return float(value)


def check_quantile(q: float, name: str = "q") -> float:
    if not 0.0 < q <= 1.0:
        raise InputError(f"{name} must be in (0, 1], got {q}")
    return float(q)


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Per-tenant weights ``{tenant: w}``, every w > 0 (missing tenants weigh 1)."""
    out = {str(k): float(v) for k, v in (weights or {}).items()}
    bad = [k for k, v in out.items() if not v > 0]
    if bad:
        raise InputError(f"tenant weights must be > 0 (bad: {', '.join(sorted(bad))})")
    return out
