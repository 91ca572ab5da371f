"""The per-request record the simulator and the gateway both produce."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

NAN = math.nan


@dataclass(slots=True)
class RequestRecord:
    """Timestamps (seconds) and counters for one request. Unset times are NaN."""

    id: int
    tenant: str
    slo_class: str
    priority: int
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    instance: int = -1
    dispatch_s: float = NAN  # routed to an instance
    first_scheduled_s: float = NAN  # first engine step that included it
    first_token_s: float = NAN
    finish_s: float = NAN
    cached_prompt_tokens: int = 0
    preemptions: int = 0
    migrations: int = 0
    generated_tokens: int = 0
    deadline_s: float = NAN
    #: Multi-model workloads: the serving model's success probability for the request's task
    #: class (NaN: no task class) and the judge's draw (1.0 correct, 0.0 wrong, NaN: none).
    quality: float = NAN
    correct: float = NAN
    #: Joules of the engine steps this request took part in (its share of each step's energy).
    energy_j: float = 0.0

    @property
    def finished(self) -> bool:
        return not math.isnan(self.finish_s)

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def queue_s(self) -> float:
        return self.first_scheduled_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first; NaN for single-token outputs."""
        if self.output_tokens <= 1:
            return NAN
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
