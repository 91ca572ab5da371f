"""Preempt the lowest-priority running request: vLLM v1's priority-scheduling behaviour.

vLLM v1 (``vllm/v1/core/sched/scheduler.py``, ``--scheduling-policy priority``) preempts the
running request with the lowest priority (latest arrival among equals) when KV blocks run
out, and lets a waiting request displace a running one of strictly lower priority.
Convention here: ``Request.priority`` is **larger = more important**.

- ``victim(running)``: the lowest priority, the newest (last admitted) among equals.
- ``victim_for_admission(head, running)``: when the head of the waiting queue cannot start
  (no free seat under ``max_num_seqs``, or refused by admission for memory), the running
  request ``victim`` would pick, if its priority is strictly below the head's; else None.
  Strictness means equal priorities never displace each other (no ping-pong).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class LowestPriorityVictim:
    def victim(self, running: list[Seq]) -> Seq:
        best = running[-1]
        for seq in reversed(running):
            if seq.req.priority < best.req.priority:
                best = seq
        return best

    def victim_for_admission(self, head: Seq, running: list[Seq]) -> Seq | None:
        if not running:
            return None
        v = self.victim(running)
        return v if v.req.priority < head.req.priority else None
