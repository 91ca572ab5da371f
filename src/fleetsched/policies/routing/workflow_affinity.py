"""Workflow affinity: an agent workflow's calls stay where its context is cached, unless
queued prefill work elsewhere costs less than computing that context again.

After SAGA (Guo, Wu and Yiu, "SAGA: Workflow-Atomic Scheduling for AI Agent Inference on GPU
Clusters", arXiv 2605.00528, Sec. 4.2: session-affinity batching with work stealing). Like
``session_affinity`` it pins a session -- a workflow's calls share ``session_id`` -- to an
instance; unlike it, it decides from the router's own accounting alone (what it sent and has
not seen come back, as a gateway must) and it prices a move instead of bounding a count. For
each healthy instance *i* the router estimates the prefill work a call would wait behind and
do there, in tokens:

    cost_i = pending_i + request_tokens * outstanding_i + prompt - reuse_i

``pending_i`` is the prompt tokens sent to *i* whose first token has not come back,
``outstanding_i`` the requests sent to *i* and not finished (each slows every step a little;
``request_tokens`` weighs it), ``reuse_i`` the tokens of this workflow's context cached on *i*:
on the pinned instance, the prompt of the workflow's last call routed there (its KV stays
cached unless evicted, more surely with KV retention: ``engine/retention``); elsewhere 0. The
call goes to the cheapest instance (ties at random from the seeded generator) and the pin
follows it; a move away from the pin is a *steal* (counted in ``steals``). Requests without
a session id have no reuse anywhere, so they go to the least loaded instance.

At most ``max_sessions`` pins are kept (least recently used dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._models import pick
from fleetsched.policies.routing._util import UniformStream, healthy
from fleetsched.policies.routing.ledger import Ledger


class WorkflowAffinity:
    needs_views = True
    needs_prefix = False

    def __init__(self, seed: int = 0, request_tokens: int = 64, max_sessions: int = 1 << 17):
        if request_tokens < 0 or max_sessions < 1:
            raise InputError("workflow_affinity: request_tokens must be >= 0, max_sessions >= 1")
        self.request_tokens = request_tokens
        self.max_sessions = max_sessions
        self._rng = UniformStream(seed)
        self.ledger = Ledger()
        self._pins: OrderedDict[str, tuple[int, int]] = OrderedDict()  # sid -> (index, tokens)
        #: Calls moved away from their workflow's pinned instance.
        self.steals = 0

    def pinned(self, session_id: str) -> int | None:
        pin = self._pins.get(session_id)
        return None if pin is None else pin[0]

    def costs(self, req: RequestView, cands: Sequence[InstanceView]) -> list[int]:
        """The prefill-work cost of ``req`` on each candidate (see the module docstring)."""
        led = self.ledger
        led.grow(max(v.index for v in cands) + 1)
        sid = req.session_id
        pin, reuse = self._pins.get(sid, (-1, 0)) if sid is not None else (-1, 0)
        reuse = min(reuse, req.prompt_tokens)
        w, p = self.request_tokens, req.prompt_tokens
        return [
            led.prefill_tokens[v.index]
            + w * led.requests[v.index]
            + p
            - (reuse if v.index == pin else 0)
            for v in cands
        ]

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        v = pick(cands, self.costs(req, cands), self._rng)
        sid = req.session_id
        if sid is not None:
            pins = self._pins
            old = pins.get(sid)
            if old is not None and old[0] != v.index:
                self.steals += 1
            pins[sid] = (v.index, req.prompt_tokens)
            pins.move_to_end(sid)
            if len(pins) > self.max_sessions:
                pins.popitem(last=False)
        self.ledger.dispatch(req, v.index)
        return v.index

    def on_first_token(self, req: RequestView, index: int) -> None:
        self.ledger.first_token(req)

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)
