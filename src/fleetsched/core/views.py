"""Read-only views handed to policies. Policies never see simulator or gateway internals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class RequestView:
    """What a routing or scheduling policy may know about a request."""

    id: int
    prompt_tokens: int
    block_hashes: tuple[int, ...]
    hash_block_tokens: int
    tenant: str
    priority: int
    session_id: str | None
    slo_class: str
    model: str | None
    deadline_s: float | None
    #: Predicted output length, when a predictor is configured (else None).
    predicted_output_tokens: int | None = None
    #: Task class and difficulty (0..1) a model router reads (None when the workload has none).
    task_class: str | None = None
    difficulty: float | None = None
    #: When the request reached the router (the runtime's clock, seconds), or None. The
    #: simulator passes simulated time, a gateway its monotonic clock; routers with timed
    #: maintenance (``cache_aware``'s periodic eviction) read time only from here.
    arrival_s: float | None = None


@dataclass(slots=True, frozen=True)
class InstanceView:
    """What a routing policy may know about one serving instance at decision time."""

    index: int
    name: str
    model: str
    gpu: str
    role: str  # "mixed", "prefill" or "decode"
    healthy: bool
    queue_len: int  # waiting requests
    running: int  # running requests
    kv_utilization: float  # used / total blocks, 0..1
    free_blocks: int
    total_blocks: int
    inflight_tokens: int  # prompt tokens of dispatched, unfinished requests (router-side count)
    #: Prompt tokens of this request already in this instance's prefix cache (0 if unknown).
    cached_prefix_tokens: int = 0
    lora_adapters: tuple[str, ...] = ()
    #: Requests preempted on this instance so far (a cumulative counter, like vLLM's
    #: ``vllm:num_preemptions_total``; 0 if unknown). A router compares it between calls.
    preemptions: int = 0

    @property
    def outstanding(self) -> int:
        return self.queue_len + self.running


@dataclass(slots=True, frozen=True)
class Outcome:
    """What became of a finished request, for routers that learn from feedback (the optional
    ``on_outcome`` notification): whether the answer was correct (1.0 / 0.0; NaN when no one
    judged it), the energy it took (J; 0 when not metered), its output tokens and its
    end-to-end latency (s)."""

    correct: float
    energy_j: float
    output_tokens: int
    e2e_s: float
