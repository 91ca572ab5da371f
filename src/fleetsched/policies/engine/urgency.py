"""Urgency-guided ordering of agent-workflow calls, after HEXGEN-TEXT2SQL.

Peng, Jiang, Wang and Yuan, "HEXGEN-TEXT2SQL: Optimizing LLM Inference Request Scheduling
for Agentic Text-to-SQL Workflow" (arXiv 2505.05286; simulator Relaxed-System-Lab/Hexgen-Flow,
commit 396a3ba, ``simulator/core/request.py``, ``engine_optimized.py``). A workflow's
end-to-end deadline is split over its stages: a call released at ``t`` gets the share of the
budget left, ``deadline - t``, that its own expected time has in the expected time of the
rest of the workflow (HEXGEN: this stage over this plus the remaining stages of the standard
pipeline; here, over this call plus the longest remaining path of calls and tool gaps,
``CallInfo.rest_s``, since our workflows are DAGs):

    stage_deadline = t + (deadline - t) * own / (own + rest)

Its urgency is ``own_left - (stage_deadline - now)`` (HEXGEN's ``-((SLO - elapsed) -
empirical_time)``), and the most urgent call runs first. ``now`` shifts every urgency alike,
so the order is that of the latest start ``stage_deadline - own_left``: the queue is a heap on
it, fixed at push (time-invariant). Late calls are not demoted (unlike ``edf``): they only
grow more urgent. ``own`` and ``own_left`` are the call's whole and remaining work,
``prefill_s_per_token`` x prompt tokens left + ``decode_s_per_token`` x output tokens left
(HEXGEN reads per-stage latencies profiled per GPU).

A request outside any workflow, or whose workflow has no deadline, is due when its SLO class
says its last token is (``arrival + ttft_s + tpot_s * (output - 1)``, or its
``deadline_s``). Ties go first come, first served; a preempted request goes ahead of its
equals.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetsched.policies.engine._params import check_rate
from fleetsched.policies.engine._slo import Deadlines

if TYPE_CHECKING:
    from fleetsched.core.request import Request
    from fleetsched.engine.sequence import Seq


class UrgencyQueue:
    time_invariant = True

    def __init__(
        self,
        prefill_s_per_token: float = 2e-5,
        decode_s_per_token: float = 0.015,
        slo_classes: Mapping[str, Any] | None = None,
    ) -> None:
        self.prefill_s_per_token = check_rate(prefill_s_per_token, "prefill_s_per_token")
        self.decode_s_per_token = check_rate(decode_s_per_token, "decode_s_per_token")
        self.deadlines = Deadlines(slo_classes)
        self._heap: list[tuple[float, int, Seq]] = []
        self._ctr = 0

    def work_s(self, prompt_tokens: int, output_tokens: int) -> float:
        return prompt_tokens * self.prefill_s_per_token + output_tokens * self.decode_s_per_token

    def stage_deadline(self, req: Request) -> float:
        """When the call should finish (see the module docstring)."""
        info = req.call
        if info is not None and info.deadline_s is not None:
            own = self.work_s(req.prompt_tokens, req.output_tokens)
            total = own + info.rest_s
            share = own / total if total > 0 else 1.0
            return req.arrival_s + (info.deadline_s - req.arrival_s) * share
        return self.deadlines.next_token(req, max(req.output_tokens - 1, 0))

    def latest_start(self, seq: Seq) -> float:
        r = seq.req
        left = self.work_s(max(seq.target - seq.computed, 0), r.output_tokens - seq.generated)
        return self.stage_deadline(r) - left

    def push(self, seq: Seq) -> None:
        self._ctr += 1
        heapq.heappush(self._heap, (self.latest_start(seq), self._ctr, seq))

    def push_front(self, seq: Seq) -> None:
        self._ctr += 1
        heapq.heappush(self._heap, (self.latest_start(seq), -self._ctr, seq))

    def peek(self, now: float) -> Seq:
        return self._heap[0][2]

    def pop(self, now: float) -> Seq:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)
