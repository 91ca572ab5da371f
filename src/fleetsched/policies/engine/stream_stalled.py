"""Preempt a streamed prompt that is waiting for its next piece first (else the newest).

For streamed prompts (``Request.prompt_chunks``; the engine prefills what has arrived and
waits for the rest). A request whose prefill has caught up with its retrieval holds KV blocks
and a seat but can compute nothing until its next piece comes; when memory runs out it is the
cheapest victim: preempting it delays no step, and under vLLM's prefix caching its full
blocks stay cached, so re-admitting it recomputes almost nothing. Among stalled requests the
one with the fewest computed tokens goes first (newest on ties); when none is stalled, the
newest running request, as vLLM.

After Stream2LLM (Bachkaniwala et al., "Stream2LLM: Overlap Context Streaming and Prefill
for Reduced Time-to-First-Token", MLSys 2026, arXiv 2604.16395): it extends vLLM's scheduler
for streaming prompts, decoupling which requests run from how memory is freed, with
preemption guided by a cost model, and reports that naive streaming under memory pressure
can make tail latency worse than not streaming at all. Its code (rajveerb/stream2llm) was
not available to this project, so this policy follows the principle the paper states -- free
memory from requests that cannot use it now -- and not its exact ranking policies; it does
not choose between swap and recompute per victim (the engine's ``preemption_mode`` does) and
supports append-mode streams only (no update-mode invalidation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class StalledStreamVictim:
    def victim(self, running: list[Seq]) -> Seq:
        best: Seq | None = None
        for seq in running:
            # Stalled: its prefill reached what has arrived (``avail`` is huge once the whole
            # prompt is there, so a decoding or unstreamed request never matches).
            if seq.computed >= seq.avail and (best is None or seq.computed <= best.computed):
                best = seq
        return best if best is not None else running[-1]
