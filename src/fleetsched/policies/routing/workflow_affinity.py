"""Workflow affinity: an agent workflow's calls stay together on the instance that holds its
context; a whole workflow moves, between calls, only when queued work elsewhere is cheaper
than computing its context again.

After SAGA (Guo, Wu and Yiu, "SAGA: Workflow-Atomic Scheduling for AI Agent Inference on GPU
Clusters", arXiv 2605.00528: the workflow, not the call, is the unit of scheduling;
session-affinity batching with work stealing). A workflow's calls share its ``session_id``.
It builds on ``session_affinity`` (pins, stealing) with three changes: it decides from the
router's own accounting alone (what it sent and has not seen come back, as a gateway must);
it is workflow-atomic (while any call of the workflow is in flight, e.g. parallel branches
of a fan-out, the next call goes to the same instance, so a workflow's branches never
split); and between calls it prices a move instead of bounding a count. For each healthy
instance *i*, the prefill work a call would wait behind and do there, in tokens:

    cost_i = pending_i + request_tokens * outstanding_i + prompt - reuse_weight * reuse_i

``pending_i`` is the prompt tokens sent to *i* whose first token has not come back,
``outstanding_i`` the requests sent to *i* and not finished (each one slows every step a
little; ``request_tokens`` weighs it), ``reuse_i`` the workflow's context cached on *i*: on
its pinned instance the longest prompt of its calls routed there (its KV stays cached unless
evicted; surely so with KV retention, ``policies/engine/retention_*``), elsewhere 0. The call
goes to the cheapest instance (ties at random from the seeded generator) and the pin follows;
a move is a *steal* (counted in ``steals``). A request without a session id has no reuse, so
it goes to the least loaded instance.

At most ``max_sessions`` pins are kept (least recently used dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, by_index, healthy, pick_min
from fleetsched.policies.routing.ledger import Ledger


class WorkflowAffinity:
    needs_views = True
    needs_prefix = False

    def __init__(
        self,
        seed: int = 0,
        request_tokens: int = 64,
        reuse_weight: float = 1.0,
        max_sessions: int = 1 << 17,
    ):
        if request_tokens < 0 or reuse_weight < 0 or max_sessions < 1:
            raise InputError(
                "workflow_affinity: request_tokens and reuse_weight must be >= 0, max_sessions >= 1"
            )
        self.request_tokens = request_tokens
        self.reuse_weight = reuse_weight
        self.max_sessions = max_sessions
        self._rng = UniformStream(seed)
        self.ledger = Ledger()
        # sid -> [pinned index, longest prompt routed there, calls in flight]
        self._pins: OrderedDict[str, list[int]] = OrderedDict()
        self._sid: dict[int, str] = {}  # request id -> its session, while in flight
        #: Workflows moved away from their pinned instance.
        self.steals = 0

    def pinned(self, session_id: str) -> int | None:
        pin = self._pins.get(session_id)
        return None if pin is None else pin[0]

    def costs(self, req: RequestView, cands: Sequence[InstanceView]) -> list[int]:
        """The prefill-work cost of ``req`` on each candidate (see the module docstring)."""
        led = self.ledger
        led.grow(max(v.index for v in cands) + 1)
        pin = self._pins.get(req.session_id) if req.session_id is not None else None
        at, reuse = (pin[0], min(pin[1], req.prompt_tokens)) if pin is not None else (-1, 0)
        reuse = int(reuse * self.reuse_weight)
        w, p = self.request_tokens, req.prompt_tokens
        return [
            led.prefill_tokens[v.index]
            + w * led.requests[v.index]
            + p
            - (reuse if v.index == at else 0)
            for v in cands
        ]

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        sid = req.session_id
        pin = self._pins.get(sid) if sid is not None else None
        here = by_index(cands, pin[0]) if pin is not None else None
        if pin is not None and pin[2] > 0 and here is not None and here.healthy:
            v = here  # workflow-atomic: a call of it is in flight there
        else:
            v = pick_min(cands, self.costs(req, cands), self._rng)
        if sid is not None:
            pins = self._pins
            if pin is None or pin[0] != v.index:
                if pin is not None:
                    self.steals += 1
                pin = [v.index, 0, pin[2] if pin is not None else 0]
                pins[sid] = pin
            pin[1] = max(pin[1], req.prompt_tokens)
            pin[2] += 1
            self._sid[req.id] = sid
            pins.move_to_end(sid)
            if len(pins) > self.max_sessions:
                pins.popitem(last=False)
        self.ledger.dispatch(req, v.index)
        return v.index

    def on_first_token(self, req: RequestView, index: int) -> None:
        self.ledger.first_token(req)

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)
        sid = self._sid.pop(req.id, None)
        pin = self._pins.get(sid) if sid is not None else None
        if pin is not None and pin[2] > 0:
            pin[2] -= 1
