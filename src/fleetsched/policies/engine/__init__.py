"""Engine-local policies: waiting-queue order, admission and preemption victim choice.

Each policy lives in its own module and is registered by name here. The engine calls them
through the small protocols in :mod:`fleetsched.policies.engine.base`. Convention:
``Request.priority`` is larger = more important. See ``docs/engine-policies.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetsched.errors import InputError
from fleetsched.policies.engine.aggressive import AggressiveAdmission
from fleetsched.policies.engine.apex import APEXAdmission
from fleetsched.policies.engine.base import (
    AdmissionPolicy,
    PreemptionPolicy,
    RetentionPolicy,
    WaitingQueue,
)
from fleetsched.policies.engine.colocate_admission import ColocateAdmission
from fleetsched.policies.engine.colocate_order import ColocateQueue
from fleetsched.policies.engine.colocate_preemption import ColocateVictim
from fleetsched.policies.engine.conservative import ConservativeAdmission
from fleetsched.policies.engine.edf import EDFQueue
from fleetsched.policies.engine.fcfs import FCFSQueue
from fleetsched.policies.engine.lowest_priority import LowestPriorityVictim
from fleetsched.policies.engine.most_slack import MostSlackVictim
from fleetsched.policies.engine.newest import NewestVictim
from fleetsched.policies.engine.past_future import PastFutureAdmission
from fleetsched.policies.engine.priority import PriorityQueue
from fleetsched.policies.engine.retention_ttl import TTLRetention
from fleetsched.policies.engine.retention_workflow import WorkflowRetention
from fleetsched.policies.engine.sjf import SJFQueue
from fleetsched.policies.engine.stream_stalled import StalledStreamVictim
from fleetsched.policies.engine.urgency import UrgencyQueue
from fleetsched.policies.engine.vtc import VTCQueue
from fleetsched.policies.engine.vtc_preempt import VTCVictim
from fleetsched.policies.engine.wfq import WFQQueue
from fleetsched.policies.params import build_policy

ORDERING: dict[str, Callable[..., WaitingQueue]] = {
    "fcfs": FCFSQueue,
    "priority": PriorityQueue,
    "sjf": SJFQueue,
    "edf": EDFQueue,
    "vtc": VTCQueue,
    "wfq": WFQQueue,
    "colocate": ColocateQueue,
    "urgency": UrgencyQueue,
}
ADMISSION: dict[str, Callable[..., AdmissionPolicy]] = {
    "aggressive": AggressiveAdmission,
    "conservative": ConservativeAdmission,
    "past_future": PastFutureAdmission,
    "colocate": ColocateAdmission,
    "apex": APEXAdmission,
}
PREEMPTION: dict[str, Callable[..., PreemptionPolicy]] = {
    "newest": NewestVictim,
    "lowest_priority": LowestPriorityVictim,
    "most_slack": MostSlackVictim,
    "colocate": ColocateVictim,
    "vtc": VTCVictim,
    "stream_stalled": StalledStreamVictim,
}
#: KV retention across tool gaps; ``none`` (no retention object): vLLM's LRU decides alone.
RETENTION: dict[str, Callable[..., RetentionPolicy | None]] = {
    "none": lambda: None,
    "ttl": TTLRetention,
    "workflow": WorkflowRetention,
}


def make(
    registry: dict[str, Callable[..., Any]],
    kind: str,
    name: str,
    params: dict,
    context: dict[str, Any] | None = None,
) -> Any:
    """Build a registered policy, with a clear error for unknown names or bad parameters.

    ``context`` (e.g. ``slo_classes``, ``seed``) is passed to factories that take those
    keyword arguments; ``params`` come from the scenario and are checked against the
    factory's signature (:mod:`fleetsched.policies.params`).
    """
    try:
        factory = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise InputError(f"unknown {kind} policy {name!r} (known: {known})") from None
    return build_policy(factory, f"{kind} policy", name, params, context)
