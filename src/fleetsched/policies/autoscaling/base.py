"""The autoscaling-policy contract.

Every ``interval_s`` seconds the runtime (the simulator's fleet controller) hands the policy
a :class:`FleetView` -- what a gateway or a Kubernetes controller can observe: the ready
replicas' load views, how many replicas are starting or draining, the arrivals and
finishes since the last tick (with how many of the finished met their SLO), and the perf
model's decode capacity of one replica -- and the policy answers the number of replicas it
wants. The runtime clamps the answer to ``[min_replicas, max_replicas]``, starts replicas
(ready after the model-load delay) or drains them (no new requests; they finish what they
hold) subject to the scale-down cooldown. Policies are pure: all state they keep is their
own; randomness comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fleetsched.core.views import InstanceView


@dataclass(frozen=True, slots=True)
class FleetView:
    now: float
    interval_s: float
    ready: Sequence[InstanceView]  # replicas that take requests
    starting: int  # provisioned, still loading the model
    draining: int  # finishing what they hold, taking nothing new
    arrivals: int  # requests that arrived since the last tick
    arrival_prompt_tokens: int  # their prompt tokens
    finished: int  # requests that finished since the last tick
    finished_met_slo: int  # of those, how many met their SLO class
    #: Perf-model ceiling on one replica's decode throughput (tokens/s) at the observed
    #: mean context, and the observed mean output length of finished requests.
    replica_decode_tokens_s: float
    mean_output_tokens: float
    min_replicas: int
    max_replicas: int

    @property
    def provisioned(self) -> int:
        """Replicas that count towards the desired number: ready and starting."""
        return len(self.ready) + self.starting

    @property
    def outstanding(self) -> int:
        """Requests queued or running on the ready replicas."""
        return sum(v.queue_len + v.running for v in self.ready)


class AutoscalingPolicy(Protocol):
    #: Seconds between decisions.
    interval_s: float

    def desired(self, fleet: FleetView) -> int:
        """The number of replicas (ready + starting) the policy wants now."""
        ...
