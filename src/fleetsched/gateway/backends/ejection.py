"""Passive outlier ejection (Envoy's ``consecutive_5xx`` / ``consecutive_gateway_failure``).

A request that fails on a backend -- connection refused or timed out, reset before the
answer ended, first-token or idle timeout, a 5xx status -- counts against it; a success
resets the count. ``consecutive_failures`` in a row eject the backend: it gets no new
requests until ``min_ejection_s`` have passed *and* ``healthy_threshold`` consecutive active
probes have succeeded since the ejection (re-admission, :func:`may_readmit`).
"""

from __future__ import annotations

from fleetsched.gateway.backends.registry import Backend
from fleetsched.gateway.config import EjectionConfig, HealthConfig


def record_success(b: Backend) -> None:
    b.consecutive_failures = 0


def record_failure(b: Backend, now: float, cfg: EjectionConfig) -> bool:
    """Count a failure; True when it ejects the backend."""
    b.consecutive_failures += 1
    b.failures += 1
    if not b.ejected and b.consecutive_failures >= cfg.consecutive_failures:
        b.ejected = True
        b.ejected_at = now
        b.ejections += 1
        b.probe_successes = 0
        return True
    return False


def may_readmit(b: Backend, now: float, cfg: EjectionConfig, health: HealthConfig) -> bool:
    return (
        b.ejected
        and now - b.ejected_at >= cfg.min_ejection_s
        and b.probe_successes >= health.healthy_threshold
    )


def readmit(b: Backend) -> None:
    b.ejected = False
    b.consecutive_failures = 0


__all__ = ["may_readmit", "readmit", "record_failure", "record_success"]
