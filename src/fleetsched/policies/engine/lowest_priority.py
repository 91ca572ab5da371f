"""Preempt the lowest-priority running request: vLLM v1's priority-scheduling behaviour.

vLLM v1 (``vllm/v1/core/sched/scheduler.py``, ``--scheduling-policy priority``) preempts the
running request with the lowest priority (latest arrival among equals) when KV blocks run
out. Convention here: ``Request.priority`` is **larger = more important**.

- ``victim(running)``: the lowest priority, the newest (last admitted) among equals.
- ``victim_for_admission(head, running)``: when the head of the waiting queue cannot start
  (no free seat under ``max_num_seqs``, or refused by admission for memory), the running
  request ``victim`` would pick, if its priority is strictly below the head's; else None.
  Equal priorities never displace each other.

Preempt-to-admit needs a waiting queue that re-queues the victim *behind* the head, or the
engine would re-admit the victim at once and loop. The engine's queue must say so by
exposing ``rank_key(seq)`` (``ordering: priority`` does): the victim must also rank after the
head there (with aging, an old low-priority request may rank first and is then left alone).
With any other order, ``victim_for_admission`` returns None and only ``victim`` acts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class LowestPriorityVictim:
    def __init__(self) -> None:
        self._rank: Callable[[Seq], Any] | None = None

    def bind(self, engine: Instance) -> None:
        self._rank = getattr(engine.waiting, "rank_key", None)

    def victim(self, running: list[Seq]) -> Seq:
        best = running[-1]
        for seq in reversed(running):
            if seq.req.priority < best.req.priority:
                best = seq
        return best

    def victim_for_admission(self, head: Seq, running: list[Seq]) -> Seq | None:
        rank = self._rank
        if rank is None or not running:
            return None
        v = self.victim(running)
        if v.req.priority < head.req.priority and rank(v) > rank(head):
            return v
        return None
