"""Engine-local policies: waiting-queue order, admission and preemption victim choice.

Each policy lives in its own module and is registered by name here. The engine calls them
through the small protocols in :mod:`fleetsched.policies.engine.base`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fleetsched.errors import InputError
from fleetsched.policies.engine.aggressive import AggressiveAdmission
from fleetsched.policies.engine.base import AdmissionPolicy, PreemptionPolicy, WaitingQueue
from fleetsched.policies.engine.fcfs import FCFSQueue
from fleetsched.policies.engine.newest import NewestVictim

ORDERING: dict[str, Callable[..., WaitingQueue]] = {"fcfs": FCFSQueue}
ADMISSION: dict[str, Callable[..., AdmissionPolicy]] = {"aggressive": AggressiveAdmission}
PREEMPTION: dict[str, Callable[..., PreemptionPolicy]] = {"newest": NewestVictim}


def make(
    registry: dict[str, Callable[..., Any]],
    kind: str,
    name: str,
    params: dict,
    context: dict[str, Any] | None = None,
) -> Any:
    """Build a registered policy, with a clear error for unknown names or bad parameters.

    ``context`` (e.g. ``slo_classes``, ``seed``) is passed to factories that take those
    keyword arguments; ``params`` come from the scenario.
    """
    try:
        factory = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise InputError(f"unknown {kind} policy {name!r} (known: {known})") from None
    accepted = inspect.signature(factory).parameters
    extra = {k: v for k, v in (context or {}).items() if k in accepted and k not in params}
    try:
        return factory(**params, **extra)
    except TypeError as e:
        raise InputError(f"bad parameters for {kind} policy {name!r}: {e}") from None
