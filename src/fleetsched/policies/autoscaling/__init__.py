"""Autoscaling policies, registered by name: how many replicas a fleet should have.

One file per policy plus one line in :data:`AUTOSCALERS`; every factory takes
``(seed: int = 0, **params)``. See :mod:`~fleetsched.policies.autoscaling.base` for the
contract and ``docs/autoscaling.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetsched.errors import InputError
from fleetsched.policies.autoscaling.base import AutoscalingPolicy, FleetView
from fleetsched.policies.autoscaling.predictive import Predictive
from fleetsched.policies.autoscaling.qlearning import QLearning
from fleetsched.policies.autoscaling.reactive import Reactive
from fleetsched.policies.autoscaling.static import Static

#: name -> factory(seed=..., **params)
AUTOSCALERS: dict[str, Callable[..., AutoscalingPolicy]] = {
    "static": Static,
    "reactive": Reactive,
    "predictive": Predictive,
    "qlearning": QLearning,
}


def make_autoscaler(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> Any:
    try:
        factory = AUTOSCALERS[name]
    except KeyError:
        known = ", ".join(sorted(AUTOSCALERS))
        raise InputError(f"unknown autoscaling policy {name!r} (known: {known})") from None
    try:
        return factory(seed=seed, **(params or {}))
    except TypeError as e:
        raise InputError(f"bad parameters for autoscaling policy {name!r}: {e}") from None


__all__ = ["AUTOSCALERS", "AutoscalingPolicy", "FleetView", "make_autoscaler"]
