"""The discrete-event kernel (heapq) that drives instances and the router.

Events are request arrivals (pulled lazily from a streamed workload, so memory stays bounded)
and instance step ends. At equal times arrivals come first, so every request that arrives at
an instant is waiting when the engines next schedule.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence

from fleetsched.core.request import Request
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import Seq
from fleetsched.errors import InputError
from fleetsched.metrics.records import RequestRecord
from fleetsched.policies.routing.base import RoutingPolicy


def request_view(req: Request) -> RequestView:
    return RequestView(
        id=req.id,
        prompt_tokens=req.prompt_tokens,
        block_hashes=req.block_hashes,
        hash_block_tokens=req.hash_block_tokens,
        tenant=req.tenant,
        priority=req.priority,
        session_id=req.session_id,
        slo_class=req.slo_class,
        model=req.model,
        deadline_s=req.deadline_s,
    )


def new_record(req: Request) -> RequestRecord:
    return RequestRecord(
        id=req.id,
        tenant=req.tenant,
        slo_class=req.slo_class,
        priority=req.priority,
        prompt_tokens=req.prompt_tokens,
        output_tokens=req.output_tokens,
        arrival_s=req.arrival_s,
        deadline_s=math.nan if req.deadline_s is None else req.deadline_s,
    )


class Simulator:
    """Runs a request stream through a router onto instances; collects one record each."""

    def __init__(self, instances: Sequence[Instance], router: RoutingPolicy) -> None:
        if not instances:
            raise InputError("a simulation needs at least one instance")
        self.instances = list(instances)
        self.router = router
        self.records: list[RequestRecord] = []
        self.now = 0.0
        self.arrived = 0
        self._views: dict[int, RequestView] = {}
        for inst in self.instances:
            inst.on_finish = self._finished

    def _finished(self, seq: Seq, now: float) -> None:
        self.records.append(seq.rec)
        rv = self._views.pop(seq.req.id, None)
        if rv is not None:
            self.router.on_finish(rv, seq.rec.instance)

    def static_views(self) -> list[InstanceView]:
        return [inst.view(self.now) for inst in self.instances]

    def run(
        self,
        requests: Iterable[Request],
        progress: Callable[[int, float], None] | None = None,
        progress_every: int = 1000,
        check: bool = False,
    ) -> list[RequestRecord]:
        """Simulate ``requests`` (sorted by arrival) to completion; return records by id.

        ``check`` asserts every instance's invariants after every event (slow; for tests)."""
        insts = self.instances
        router = self.router
        needs_views = router.needs_views
        needs_prefix = router.needs_prefix
        static = self.static_views()
        versions = [0] * len(insts)
        heap: list[tuple[float, int, int, int]] = []
        ctr = 0
        it = iter(requests)
        nxt = next(it, None)
        last_arrival = -math.inf
        while True:
            if nxt is not None and (not heap or nxt.arrival_s <= heap[0][0]):
                req = nxt
                t = req.arrival_s
                if t < last_arrival:
                    raise InputError(
                        f"request {req.id} arrives at {t} s, before the previous one"
                        f" ({last_arrival} s): the workload must be sorted by arrival time"
                    )
                last_arrival = t
                self.now = t
                seq = Seq(req, new_record(req))
                rv = request_view(req)
                self._views[req.id] = rv
                if needs_views:
                    views = [inst.view(t, seq, needs_prefix) for inst in insts]
                else:
                    views = static
                i = router.route(rv, views)
                inst = insts[i]
                inst.sync(t)
                nt = inst.enqueue(seq, t)
                if nt is not None:
                    versions[i] += 1
                    ctr += 1
                    heapq.heappush(heap, (nt, ctr, i, versions[i]))
                self.arrived += 1
                if check:
                    inst.check_invariants()
                if progress is not None and self.arrived % progress_every == 0:
                    progress(self.arrived, t)
                nxt = next(it, None)
                continue
            if not heap:
                break
            t, _, i, ver = heapq.heappop(heap)
            if ver != versions[i]:
                continue
            self.now = t
            nt = insts[i].on_event(t)
            if check:
                insts[i].check_invariants()
            if nt is not None:
                ctr += 1
                heapq.heappush(heap, (nt, ctr, i, ver))
        if progress is not None:
            progress(self.arrived, self.now)
        self.records.sort(key=lambda r: r.id)
        return self.records
