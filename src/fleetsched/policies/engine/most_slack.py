"""Preempt the running request with the most slack to its deadline or SLO (after JITServe,
NSDI 2026).

The preemption side of least-slack / SLO-aware scheduling (JITServe, Zhang et al., NSDI'26,
arXiv:2504.20068; Andes, Liu et al., "Andes: Defining and Enhancing Quality-of-Experience in
LLM-Based Text Streaming Services", 2024, which pauses the requests furthest ahead of their
token-delivery pace): when memory runs out, evict the request that can best afford to wait.

A running request's next token is due at its deadline (``deadline_s`` or arrival + SLO
``ttft_s`` for the first token; then paced by ``tpot_s`` per generated token; see ``_slo``).
Its slack is ``deadline - now - prefill_s_per_token * prompt tokens it still has to
prefill``. The request with the largest slack is the victim; the newest among equals. ``now``
is common to every candidate, so the choice does not need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetsched.policies.engine._params import check_rate
from fleetsched.policies.engine._slo import Deadlines

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class MostSlackVictim:
    def __init__(
        self,
        prefill_s_per_token: float = 2e-5,
        slo_classes: Mapping[str, Any] | None = None,
    ) -> None:
        self.prefill_s_per_token = check_rate(prefill_s_per_token, "prefill_s_per_token")
        self.deadlines = Deadlines(slo_classes)
        self.engine: Instance | None = None

    def bind(self, engine: Instance) -> None:
        self.engine = engine

    def slack_key(self, seq: Seq) -> float:
        """Slack + now: deadline minus the time still needed before the next token."""
        e = self.engine
        if e is None:
            generated, computed = seq.generated, seq.computed
        else:
            generated, computed = e.generated_tokens(seq), e.computed_tokens(seq)
        left = max(seq.target - computed, 0)
        return self.deadlines.next_token(seq.req, generated) - self.prefill_s_per_token * left

    def victim(self, running: list[Seq]) -> Seq:
        best = running[-1]
        best_key = -math.inf
        for seq in running:  # oldest first: ">=" keeps the newest among equals
            k = self.slack_key(seq)
            if k >= best_key:
                best, best_key = seq, k
        return best
