"""The central queue: requests wait here while every eligible backend is saturated, in the
order of an engine ordering policy, and are routed only when released (late binding, as the
Gateway API Inference Extension's flow control does).

The ordering objects are the simulator's own (``policies/engine``: fcfs, priority, vtc, wfq,
edf, sjf), unchanged. They order ``Seq``-like objects: :class:`Waiting` carries what they read
(``req`` -- a :class:`~fleetsched.core.request.Request` -- and the token counters ``target``,
``computed``, ``generated``). Policies that bind to an engine to read per-tenant service
(vtc) bind to :class:`TenantService`, the gateway's own accounting: prompt tokens of the
requests it dispatched and output tokens it relayed, per tenant. A policy's ``on_finish``
hook (wfq learns output lengths there) is called when the request ends.

One queue per model (a request waits only for backends that serve its model). The queue is
bounded (``max_size`` waiting requests: then 429) and every wait is bounded (``timeout_s``:
then 503). A request that leaves early (timeout, client gone) stays in the policy's queue as a
dead entry that is skipped when it comes out (the policies have no removal); dead entries
are dropped for good by rebuilding the queue when they outnumber the live ones.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetsched.api.errors import APIError
from fleetsched.core.request import Request
from fleetsched.policies.engine.base import WaitingQueue


@dataclass(slots=True, eq=False)
class Waiting:
    """A request in the central queue, as an ordering policy sees a ``Seq``."""

    req: Request
    target: int  # prompt tokens still to prefill (0 once it left the queue early)
    model: str | None
    future: asyncio.Future[Any]
    queued_at: float
    computed: int = 0
    generated: int = 0
    dead: bool = False
    timer: asyncio.TimerHandle | None = None
    popped: bool = False
    #: Whoever waits (the gateway's call) and the backends it must avoid (failed before).
    owner: Any = None
    tried: frozenset[int] = frozenset()


class TenantService:
    """Per-tenant service from the gateway's accounting (what vtc reads from an engine)."""

    __slots__ = ("output", "prompt")

    def __init__(self) -> None:
        self.prompt: dict[str, int] = {}
        self.output: dict[str, int] = {}

    def tenant_service(self, tenant: str) -> tuple[int, int]:
        return self.prompt.get(tenant, 0), self.output.get(tenant, 0)

    def add_prompt(self, tenant: str, n: int) -> None:
        self.prompt[tenant] = self.prompt.get(tenant, 0) + n

    def add_output(self, tenant: str, n: int) -> None:
        self.output[tenant] = self.output.get(tenant, 0) + n


class _ModelQueue:
    __slots__ = ("dead", "live", "q")

    def __init__(self, q: WaitingQueue) -> None:
        self.q = q
        self.live = 0
        self.dead = 0


class CentralQueue:
    def __init__(
        self,
        factory: Callable[[], WaitingQueue],
        service: TenantService,
        max_size: int,
        timeout_s: float,
    ) -> None:
        self.factory = factory
        self.service = service
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._queues: dict[str | None, _ModelQueue] = {}
        self.size = 0  # live waiting requests, all models
        self.by_tenant: dict[str, int] = {}
        self.loop = asyncio.get_event_loop()
        self.on_expire: Callable[[Waiting], None] | None = None

    def _new(self) -> WaitingQueue:
        q = self.factory()
        bind = getattr(q, "bind", None)
        if bind is not None:
            bind(self.service)
        return q

    def models(self) -> list[str | None]:
        return [m for m, mq in self._queues.items() if mq.live]

    def waiting(self, model: str | None) -> int:
        mq = self._queues.get(model)
        return mq.live if mq is not None else 0

    def put(self, w: Waiting) -> None:
        """Queue ``w`` (or raise the 429 of a full queue)."""
        if self.size >= self.max_size:
            raise APIError(
                429,
                f"every backend is saturated and the gateway's queue is full "
                f"({self.max_size} requests waiting); retry later",
                None,
                "queue_full",
                {"retry-after": "1"},
            )
        mq = self._queues.get(w.model)
        if mq is None:
            mq = self._queues[w.model] = _ModelQueue(self._new())
        mq.q.push(w)  # type: ignore[arg-type]
        mq.live += 1
        self.size += 1
        t = w.req.tenant
        self.by_tenant[t] = self.by_tenant.get(t, 0) + 1
        w.timer = self.loop.call_later(self.timeout_s, self._expire, w)

    def _left(self, w: Waiting) -> None:
        mq = self._queues[w.model]
        mq.live -= 1
        self.size -= 1
        t = w.req.tenant
        self.by_tenant[t] -= 1
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None

    def _expire(self, w: Waiting) -> None:
        w.timer = None
        if w.dead or w.popped:
            return
        self.cancel(w)
        if not w.future.done():
            secs = max(1, math.ceil(self.timeout_s / 4))
            w.future.set_exception(
                APIError(
                    503,
                    f"every backend stayed saturated for {self.timeout_s:g} s (the gateway's "
                    "queue timeout); retry later",
                    None,
                    "queue_timeout",
                    {"retry-after": str(secs)},
                )
            )
        if self.on_expire is not None:
            self.on_expire(w)

    def cancel(self, w: Waiting) -> None:
        """``w`` leaves the queue early (timeout, client gone): a dead entry from now on."""
        if w.dead or w.popped:
            return
        w.dead = True
        w.target = 0  # costs nothing to a policy that charges prompt tokens when it pops
        self._left(w)
        mq = self._queues[w.model]
        mq.dead += 1
        if mq.dead > max(64, 2 * mq.live):
            self._rebuild(w.model, mq)

    def _rebuild(self, model: str | None, mq: _ModelQueue) -> None:
        now = time.monotonic()
        old = mq.q
        keep = []
        while len(old):
            s: Waiting = old.pop(now)  # type: ignore[assignment]
            if not s.dead:
                keep.append(s)
            else:
                self._finished(old, s)
        mq.q = self._new()
        for s in keep:
            mq.q.push(s)  # type: ignore[arg-type]
        mq.dead = 0

    def pop(self, model: str | None, now: float) -> Waiting | None:
        """The next live request of ``model`` in the policy's order, out of the queue."""
        mq = self._queues.get(model)
        if mq is None:
            return None
        q = mq.q
        while mq.live and len(q):
            w: Waiting = q.pop(now)  # type: ignore[assignment]
            if w.dead:
                mq.dead -= 1
                self._finished(q, w)
                continue
            w.popped = True
            self._left(w)
            return w
        return None

    @staticmethod
    def _finished(q: WaitingQueue, w: Waiting, now: float = math.nan) -> None:
        hook = getattr(q, "on_finish", None)
        if hook is not None:
            hook(w, now)

    def finished(self, w: Waiting, now: float) -> None:
        """A released request ended (with ``w.generated`` output tokens)."""
        mq = self._queues.get(w.model)
        if mq is not None:
            self._finished(mq.q, w, now)

    def fail_all(self, model: str | None, error: APIError) -> None:
        """Every live request of ``model`` leaves with ``error`` (no backend left for it)."""
        now = time.monotonic()
        while True:
            w = self.pop(model, now)
            if w is None:
                return
            self.finished(w, math.nan)
            if not w.future.done():
                w.future.set_exception(error)


__all__ = ["CentralQueue", "TenantService", "Waiting"]
