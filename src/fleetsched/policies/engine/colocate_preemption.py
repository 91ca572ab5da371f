"""Batch jobs yield to online traffic: they are preempted first (newest first), and an online
request that cannot start (no seat or no memory) preempts the newest running batch job
(xLLM-style co-location; see ``colocate_order``).

Preempt-to-admit needs the ``colocate`` ordering (same ``batch_class``), which queues the
preempted batch job behind every online request; with any other order the victim could rank
first, be re-admitted and preempted again, so only the out-of-memory choice applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.policies.engine._batch import is_batch
from fleetsched.policies.engine.colocate_order import ColocateQueue

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class ColocateVictim:
    def __init__(self, batch_class: str = "batch") -> None:
        self.batch_class = batch_class
        self._online_first = False

    def bind(self, engine: Instance) -> None:
        q = engine.waiting
        self._online_first = isinstance(q, ColocateQueue) and q.batch_class == self.batch_class

    def _newest_batch(self, running: list[Seq]) -> Seq | None:
        for seq in reversed(running):
            if is_batch(seq, self.batch_class):
                return seq
        return None

    def victim(self, running: list[Seq]) -> Seq:
        return self._newest_batch(running) or running[-1]

    def victim_for_admission(self, head: Seq, running: list[Seq]) -> Seq | None:
        if not self._online_first or is_batch(head, self.batch_class):
            return None
        return self._newest_batch(running)
