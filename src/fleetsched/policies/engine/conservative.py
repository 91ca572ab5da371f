"""Conservative admission: reserve every running request's full KV need, never preempt
(Orca-style reservation, as measured by Kwon et al., SOSP 2023).

Serving systems before paged KV (Orca, FasterTransformer) reserved KV memory for a request's
maximum length up front; Kwon et al. ("Efficient Memory Management for Large Language Model
Serving with PagedAttention", SOSP'23) measure the memory this wastes. The Past-Future paper
(Gong et al., ASPLOS'25) compares against this "conservative" scheduler.

Every running request reserves ``ceil((prompt + max_output) / block)`` blocks. The head of the
waiting queue starts only if its own full reservation (minus prefix blocks it would share with
running requests) fits in the free blocks left after the *not yet allocated* part of every
running request's reservation. ``max_output`` is the request's ``output_tokens`` (the trace's
answer length, which plays the part of ``max_tokens``) unless ``max_output_tokens`` is given.

Guarantee: when no request outgrows its reservation (always true without
``max_output_tokens``, and with ``max_output_tokens`` >= every output), the engine never
preempts for memory. The price is queueing: memory reserved for tokens not yet generated
stays idle. An engine with nothing running admits the head whatever its reservation (the
engine has already rejected requests whose actual need can never fit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.errors import InputError

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class ConservativeAdmission:
    # Free blocks and the unallocated reservations shrink together while requests decode, so
    # a refusal stays a refusal until something finishes.
    monotone = True

    def __init__(self, max_output_tokens: int | None = None) -> None:
        if max_output_tokens is not None and max_output_tokens < 1:
            raise InputError(f"max_output_tokens must be >= 1, got {max_output_tokens}")
        self.max_output_tokens = max_output_tokens

    def reservation(self, seq: Seq, engine: Instance) -> int:
        """Blocks ``seq`` may ever hold: prompt plus maximum output."""
        r = seq.req
        out = r.output_tokens if self.max_output_tokens is None else self.max_output_tokens
        return engine.blocks_for(r.prompt_tokens + out)

    def pending(self, engine: Instance) -> int:
        """Reserved blocks that running requests have not allocated yet."""
        # Hot path (one pass over the batch per admission check): reservation() inlined.
        bt, held, cap = engine.bt, engine.blocks_held, self.max_output_tokens
        total = 0
        for s in engine.running.values():
            r = s.req
            out = r.output_tokens if cap is None else cap
            left = -(-(r.prompt_tokens + out) // bt) - held(s)
            if left > 0:
                total += left
        return total

    def admit(self, seq: Seq, need_blocks: int, engine: Instance) -> bool:
        free = engine.kv.free
        if need_blocks > free:
            return False
        if not engine.running:  # alone it always fits (the engine rejected what never can)
            return True
        draw = self.reservation(seq, engine) - _shared_prefix_blocks(seq, engine)
        return max(draw, need_blocks) <= free - self.pending(engine)


def _shared_prefix_blocks(seq: Seq, engine: Instance) -> int:
    """Prompt blocks ``seq`` would share with running requests (already allocated, not free).

    Cached blocks nobody references count as free, so using them draws from free memory."""
    if seq.swapped or not engine.cfg.enable_prefix_caching or not seq.req.block_hashes:
        return 0
    kv = engine.kv
    keys = seq.prefix_keys(engine.bt)
    hits = kv.match(keys, (seq.target - 1) // engine.bt)
    rc = kv.rc  # reference counts, <= 0 for idle blocks
    return sum(1 for k in keys[:hits] if rc[k] > 0)
