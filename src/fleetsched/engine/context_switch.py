"""What a swap-preemption context switch costs: vLLM's per-block copies that stall the step, or
FastSwitch's block groups copied asynchronously with host copies reused.

Source: Shen, Li and Gao, "FastSwitch: Optimizing Context Switching Efficiency in
Fairness-aware Large Language Model Serving", arXiv:2411.18424 (v1, Nov 2024). It finds three
costs of the frequent preemptions a fairness scheduler makes: inadequate I/O utilisation (vLLM
moves KV in 16-token blocks, one small copy at a time), GPU idleness (the step waits for the
swap) and unnecessary I/O in multi-turn conversations (KV already in host memory is sent again).
Its fixes: a Dynamic Block Group Manager (KV allocated in contiguous groups of blocks, copied as
units), a Multithreading Swap Manager (swaps run asynchronously, overlapped with compute) and a
KV Cache Reuse Mechanism (host copies kept; only what changed is sent back).

Cost of swapping ``b`` blocks of ``bt`` tokens out or in, per GPU of the instance:

    vllm:       b * (bytes_per_block / link + 2 * layers * copy_latency)      added to the step
    fastswitch: b * (bytes_per_block / link + 2 * layers * bt / group_tokens * copy_latency)
                step = max(compute, swap) (overlapped); a swap-out sends only the blocks whose
                host copy is stale (those filled since the request was last swapped in)

``2 * layers`` copies per block is vLLM's ``swap_blocks``: one ``cudaMemcpyAsync`` per block for
each layer's key and value cache (vLLM v0 ``csrc/cache_kernels.cu``). ``copy_latency`` (the
engine knob ``swap_copy_latency_s``) is the fixed cost of one copy; it defaults to 0, today's
pure-bandwidth model, so neither layout changes a run unless it is set.

Simplifications: overlap is perfect up to the longer of the two (the step cannot end before the
KV it resumes has arrived; a real async swap could also let the resumed request join a later
step); the group size is fixed (FastSwitch sizes groups dynamically); the link is not shared with
other transfers.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.errors import InputError

#: Layouts of ``engine.context_switch``.
CONTEXT_SWITCHES: tuple[str, ...] = ("vllm", "fastswitch")


@dataclass(frozen=True, slots=True)
class ContextSwitch:
    """Swap cost model of one instance (module docstring)."""

    kind: str
    bytes_per_block: float
    link_bytes_s: float
    copies_per_block: float
    copy_latency_s: float

    def __post_init__(self) -> None:
        if self.kind not in CONTEXT_SWITCHES:
            raise InputError(
                f"unknown context_switch {self.kind!r} (known: {', '.join(CONTEXT_SWITCHES)})"
            )

    @property
    def overlap(self) -> bool:
        """Swaps run beside compute (FastSwitch's Multithreading Swap Manager)."""
        return self.kind == "fastswitch"

    @property
    def reuse(self) -> bool:
        """Host copies stay valid after a swap-in (FastSwitch's KV Cache Reuse Mechanism)."""
        return self.kind == "fastswitch"

    def cost_s(self, blocks: int) -> float:
        """Seconds to move ``blocks`` blocks between GPU and host memory."""
        per_block = self.bytes_per_block / self.link_bytes_s
        if self.copy_latency_s:
            per_block += self.copies_per_block * self.copy_latency_s
        return blocks * per_block


def context_switch(
    kind: str,
    *,
    kv_bytes_per_token: float,
    block_tokens: int,
    layers: int,
    link_bytes_s: float,
    copy_latency_s: float = 0.0,
    group_tokens: int = 1024,
) -> ContextSwitch:
    """The :class:`ContextSwitch` of ``kind`` for an instance: ``2 * layers`` copies per block for
    vLLM, ``2 * layers * block_tokens / group_tokens`` for FastSwitch's block groups."""
    copies = 2 * layers
    if kind == "fastswitch":
        if group_tokens < block_tokens:
            raise InputError(
                f"swap_group_tokens ({group_tokens}) must be at least a block ({block_tokens})"
            )
        copies = 2 * layers * block_tokens / group_tokens
    return ContextSwitch(
        kind=kind,
        bytes_per_block=kv_bytes_per_token * block_tokens,
        link_bytes_s=link_bytes_s,
        copies_per_block=copies,
        copy_latency_s=copy_latency_s,
    )
