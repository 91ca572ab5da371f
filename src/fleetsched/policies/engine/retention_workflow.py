"""Workflow-aware KV retention: pin a finished call's blocks for as long as its workflow's
next call is expected to take to come, and give up first the pins worth least.

After SAGA (Guo, Wu and Yiu, arXiv 2605.00528, Sec. 4.1: the Agent Execution Graph predicts
KV reuse across tool-call boundaries and keeps what will be reused, within 1.31x of Bélády's
optimal). A call that a later call of its workflow extends carries the expected tool gap
before it (``CallInfo.next_gap_s``: the workflow framework's prediction; in the simulator
the generator's actual gap, i.e. an oracle); its blocks stay pinned until ``slack`` times that
gap plus ``margin_s`` has passed. A pin's value is the prefill it saves per second it holds
memory, ``pinned tokens / max(gap, min_gap_s)``: under memory pressure the engine gives up
the least valuable pins first (a long gap or a short context goes first), before it preempts
anything. Calls no later call extends are not pinned (vLLM's LRU then decides).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._pins import PinnedRetention, Pins

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class WorkflowRetention(PinnedRetention):
    def __init__(self, slack: float = 2.0, margin_s: float = 1.0, min_gap_s: float = 0.1) -> None:
        if slack < 1 or margin_s < 0 or not min_gap_s > 0:
            raise InputError("slack must be >= 1, margin_s >= 0 and min_gap_s > 0")
        self.slack, self.margin_s, self.min_gap_s = float(slack), float(margin_s), float(min_gap_s)
        self.pins = Pins()

    def bind(self, engine: Instance) -> None:
        self.pins.bind(engine)

    def on_finish(self, seq: Seq, now: float) -> None:
        info = seq.req.call
        if info is None or info.next_gap_s is None:
            return
        gap = info.next_gap_s
        tokens = seq.req.prompt_tokens + seq.req.output_tokens
        value = tokens / max(gap, self.min_gap_s)
        self.pins.add(seq, value, now + self.slack * gap + self.margin_s)
