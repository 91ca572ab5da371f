"""KV retention with a fixed time to live: a finished workflow call's blocks stay pinned for
``ttl_s`` seconds, so its next call finds them cached after the tool gap.

After Continuum (Li et al., "Continuum: Efficient and Robust Multi-Turn LLM Agent Scheduling
with KV Cache Time-to-Live", arXiv 2511.02230: pin a multi-turn agent's KV across a tool call
for a time to live) and vLLM's LRU baseline, which frees them at once. Only calls that a later
call of their workflow extends (``CallInfo.next_gap_s`` set) are pinned. Under memory
pressure the engine gives pins up before it preempts anything, oldest first (lowest value =
earliest finish).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._pins import PinnedRetention, Pins

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class TTLRetention(PinnedRetention):
    def __init__(self, ttl_s: float = 10.0) -> None:
        if not ttl_s > 0:
            raise InputError(f"ttl_s must be > 0, got {ttl_s}")
        self.ttl_s = float(ttl_s)
        self.pins = Pins()

    def bind(self, engine: Instance) -> None:
        self.pins.bind(engine)

    def on_finish(self, seq: Seq, now: float) -> None:
        info = seq.req.call
        if info is not None and info.next_gap_s is not None:
            self.pins.add(seq, now, now + self.ttl_s)
