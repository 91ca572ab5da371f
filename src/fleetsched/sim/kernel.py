"""The discrete-event kernel (heapq) that drives instances and the router.

Events: request arrivals (pulled lazily from a streamed workload, so memory stays bounded),
instance step ends, and timed actions (view refreshes, migration ticks, KV transfers). At
equal times arrivals come first, so every request that arrives at an instant is waiting when
the engines next schedule.

Mechanics the router only decides on live here:
- **Stale views** (``view_refresh_s > 0``): the router sees engine metrics as scraped at the
  last refresh, plus exact router-side in-flight accounting (outstanding requests and prompt
  tokens), as a gateway does.
- **Prefill/decode disaggregation**: an instance with role ``prefill`` hands a request over
  after its first token; the router's ``pick_decode`` (or the least loaded, ties at
  random) names a decode instance and the KV moves over the link (bytes /
  ``kv_link_bytes_s``).
- **Live migration** (Llumnix): every ``router.migration_interval_s`` the router's
  ``plan_migrations(views)`` names (source, destination) pairs; the source's cheapest decoding
  request is copied while it keeps decoding (stage 1: its KV / link bandwidth), then stopped
  at a step boundary and only the tokens produced meanwhile are copied (stage 2, the
  downtime) before it resumes on the destination.
- **Judged answers** (multi-model workloads): with a ``judge``, a finished request with a
  task class gets its serving model's success probability and a correctness draw, and a
  router with ``on_outcome(req, index, outcome)`` is told them (with the request's energy).
- **Follow-up requests** (agent workflows, ``sim/workflows.py``): a ``followups`` object's
  ``on_finish(req, rec, now)`` returns requests that a finished one releases (a workflow's
  next calls, each after its tool gap); they arrive at their ``arrival_s`` (>= now), merged
  with the workload's stream.
- **Streamed prompts** (``Request.prompt_chunks``, Stream2LLM): a request is routed with
  its first piece and each later piece reaches its engine at its time
  (``Instance.add_prompt_tokens``); the engine prefills only what has arrived. With
  ``stream_prompts=False`` the request is held back and routed once its last piece is there
  (today's engines), its arrival time unchanged (TTFT counts the wait).
- **Fleet membership** (autoscaling, ``sim/autoscale.py``): instances can be added during a
  run and taken out of routing (draining: they finish what they hold). The router only ever
  sees the *routable* instances; indices are never reused, so a router's per-index state
  stays valid. The controller drives this through ``add_instance``, ``set_routable``,
  ``call_at`` and the ``on_arrival`` / ``on_finish`` notifications.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fleetsched.core.request import Request
from fleetsched.core.views import InstanceView, Outcome, RequestView
from fleetsched.engine.instance import Instance
from fleetsched.engine.llamacpp import LlamaCppInstance
from fleetsched.engine.sequence import DECODE, DONE, Seq
from fleetsched.errors import InputError
from fleetsched.metrics.records import RecordTable, RequestRecord
from fleetsched.policies.routing._util import UniformStream, pick_min
from fleetsched.policies.routing.base import RoutingPolicy
from fleetsched.sim.judge import Judge

#: Timed-action kinds (heap entries with instance index -1).
_REFRESH, _MIGRATE_TICK, _MIGRATE_STOP, _ATTACH, _CALL, _PIECE = range(6)


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
        task_class=req.task_class,
        difficulty=req.difficulty,
        arrival_s=req.arrival_s,
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


@dataclass(slots=True)
class KernelStats:
    migrations: int = 0
    migration_downtime_s: float = 0.0
    migration_bytes: float = 0.0
    kv_transfers: int = 0  # prefill -> decode handovers
    kv_transfer_s: float = 0.0
    view_refreshes: int = 0


class Simulator:
    """Runs a request stream through a router onto instances; collects one record each."""

    def __init__(
        self,
        instances: Sequence[Instance | LlamaCppInstance],
        router: RoutingPolicy,
        *,
        view_refresh_s: float = 0.0,
        kv_link_bytes_s: float = 25e9,
        followups: Any = None,
        judge: Judge | None = None,
        autoscaler: Any = None,
        stream_prompts: bool = True,
        sampler: Any = None,
        seed: int = 0,
    ) -> None:
        if not instances:
            raise InputError("a simulation needs at least one instance")
        self.instances = list(instances)
        self.router = router
        self.view_refresh_s = view_refresh_s
        self.kv_link_bytes_s = kv_link_bytes_s
        #: Records of ended requests, packed (``RecordTable``: no object per record kept).
        self.records = RecordTable()
        self.stats = KernelStats()
        self.now = 0.0
        self.arrived = 0
        self._views: dict[int, RequestView] = {}
        self._heap: list[tuple[float, int, int, int]] = []
        self._ctr = itertools.count(1)  # heap tie-breaker, in push order
        self._versions = [0] * len(self.instances)
        self._actions: dict[int, tuple[int, Any]] = {}
        self._migrating: dict[int, tuple[int, float, int]] = {}  # id(seq) -> dst, t0, tokens
        self._snapshot: list[InstanceView] = []
        self._moves = 0  # requests between instances (pending handovers)
        self._more_arrivals = False
        self.followups = followups
        self.judge = judge
        self._outcome_hook = getattr(router, "on_outcome", None)
        self._later: list[tuple[float, int, Request]] = []  # released follow-ups, by arrival
        self.stream_prompts = stream_prompts
        self._held_back: set[int] = set()  # streamed prompts buffered until complete
        self._pieces = 0  # prompt pieces still to arrive
        if getattr(router, "plan_migrations", None) is not None:
            for inst in self.instances:
                if not getattr(inst, "supports_migration", True):
                    raise InputError(
                        f"router {type(router).__name__} migrates requests live, which the "
                        f"engine of {inst.name} does not support"
                    )
        self._first_token_hook = getattr(router, "on_first_token", None)
        #: Indices of the instances the router may choose (all but draining ones).
        self.routable: list[int] = list(range(len(self.instances)))
        self._static: list[InstanceView] = []
        self.autoscaler = autoscaler
        #: Records each instance's queue, running batch and KV use (``sim/sampler.py``).
        self.sampler = sampler
        self._rng = UniformStream(seed)  # ties of the default decode pick
        for inst in self.instances:
            self._wire(inst)

    def _wire(self, inst: Instance) -> None:
        inst.on_finish = self._finished
        inst.on_detach = self._detached
        if self._first_token_hook is not None:
            inst.on_first_token = self._first_token

    # ------------------------------------------------------------------ events
    def _push_instance(self, i: int, t: float, bump: bool) -> None:
        if bump:
            self._versions[i] += 1
        heapq.heappush(self._heap, (t, next(self._ctr), i, self._versions[i]))

    def _push_action(self, t: float, kind: int, payload: Any = None) -> None:
        if kind in (_ATTACH, _MIGRATE_STOP):
            self._moves += 1
        c = next(self._ctr)
        self._actions[c] = (kind, payload)
        heapq.heappush(self._heap, (t, c, -1, 0))

    def _first_token(self, seq: Seq, now: float) -> None:
        rv = self._views.get(seq.req.id)
        if rv is not None:
            self._first_token_hook(rv, seq.rec.instance)  # type: ignore[misc]

    def _finished(self, seq: Seq, now: float) -> None:
        self._migrating.pop(id(seq), None)
        rec = seq.rec
        done = not math.isnan(rec.finish_s)
        if self.judge is not None and done:
            rec.quality, rec.correct = self.judge.judge(seq.req, self.instances[rec.instance].model)
        self.records.append(rec)  # packed now: the record is final
        rv = self._views.pop(seq.req.id, None)
        if rv is not None:
            self.router.on_finish(rv, rec.instance)
            if self._outcome_hook is not None and done:
                out = Outcome(rec.correct, rec.energy_j, rec.generated_tokens, rec.e2e_s)
                self._outcome_hook(rv, rec.instance, out)
        if self.followups is not None:
            for req in self.followups.on_finish(seq.req, seq.rec, now):
                heapq.heappush(self._later, (req.arrival_s, next(self._ctr), req))
        if self.autoscaler is not None:
            self.autoscaler.on_finish(self, seq, now)

    # ------------------------------------------------------------------ fleet membership
    def add_instance(self, inst: Instance) -> None:
        """Add a new instance (not routable until ``set_routable``); its ``index`` must be
        ``len(self.instances)``."""
        if inst.index != len(self.instances):
            raise ValueError(f"new instance index {inst.index}, expected {len(self.instances)}")
        self.instances.append(inst)
        self._versions.append(0)
        self._wire(inst)

    def set_routable(self, index: int, on: bool, t: float) -> None:
        """Let the router choose ``index`` (a ready instance) or not (a draining one). The
        router's views change at once: a gateway learns membership from its control
        plane, not from the next metrics scrape."""
        if on and index not in self.routable:
            self.routable.append(index)
            self.routable.sort()
        elif not on and index in self.routable:
            self.routable.remove(index)
        self._static = self.fresh_views(t)
        if self.view_refresh_s > 0:
            self._snapshot = self.fresh_views(t)

    def call_at(self, t: float, fn: Callable[[float], None]) -> None:
        """Call ``fn(t)`` at time ``t`` (a timed action of the controller)."""
        self._push_action(t, _CALL, fn)

    def work_left(self) -> bool:
        return self._work_left()

    # ------------------------------------------------------------------ views
    def fresh_views(
        self, t: float, seq: Seq | None = None, prefix: bool = False
    ) -> list[InstanceView]:
        insts = self.instances
        return [insts[i].view(t, seq, prefix) for i in self.routable]

    def _router_views(self, t: float, seq: Seq, prefix: bool) -> list[InstanceView]:
        if self.view_refresh_s <= 0:
            return self.fresh_views(t, seq, prefix)
        out = []
        live = [self.instances[i] for i in self.routable]
        for snap, inst in zip(self._snapshot, live, strict=True):
            cached = 0
            if prefix:
                cached = inst.cached_prefix_tokens(seq, t)
            out.append(
                dataclasses.replace(
                    snap,
                    queue_len=max(0, inst.outstanding - snap.running),
                    inflight_tokens=inst.inflight_prompt_tokens,
                    cached_prefix_tokens=cached,
                )
            )
        return out

    # ------------------------------------------------------------------ handovers
    def _detached(self, seq: Seq, now: float) -> None:
        """An instance let ``seq`` go with its KV: move it to its next instance."""
        src = self.instances[seq.rec.instance]
        # For the router the request has left the instance it was sent to.
        rv = self._views.pop(seq.req.id, None)
        if rv is not None:
            self.router.on_finish(rv, src.index)
        mig = self._migrating.pop(id(seq), None)
        if mig is not None:
            dst, _, tokens0 = mig
            delta = max(seq.computed - tokens0, 0)
            dt = delta * src.kv_bytes_per_token / self.kv_link_bytes_s
            self.stats.migrations += 1
            self.stats.migration_downtime_s += dt
            self.stats.migration_bytes += seq.computed * src.kv_bytes_per_token
            seq.rec.migrations += 1
            seq.migrated = True  # resumes ahead of the destination's waiting queue
        else:  # prefill instance -> decode instance
            rv = rv or request_view(seq.req)
            live = [self.instances[i] for i in self.routable]
            decode = [i for i in live if i.role == "decode"] or [
                i for i in live if i.role != "prefill"
            ]
            if not decode:
                raise InputError("prefill instances need at least one decode or mixed instance")
            views = [i.view(now) for i in decode]
            pick = getattr(self.router, "pick_decode", None)
            if pick is not None:
                dst = pick(rv, views)
            else:
                keys = [(v.outstanding, v.kv_utilization) for v in views]
                dst = pick_min(views, keys, self._rng).index
            dt = seq.computed * src.kv_bytes_per_token / self.kv_link_bytes_s
            self.stats.kv_transfers += 1
            self.stats.kv_transfer_s += dt
        self._push_action(now + dt, _ATTACH, (seq, dst))

    def _action(self, t: float, kind: int, payload: Any) -> None:
        if kind in (_ATTACH, _MIGRATE_STOP):
            self._moves -= 1
        if kind == _ATTACH:
            seq, dst = payload
            inst = self.instances[dst]
            inst.sync(t)
            nt = inst.enqueue(seq, t)
            if nt is not None:
                self._push_instance(dst, nt, True)
        elif kind == _CALL:
            payload(t)
        elif kind == _PIECE:
            self._pieces -= 1
            seq, tokens, last = payload
            if seq.state != DONE:
                i = seq.rec.instance
                inst = self.instances[i]
                inst.sync(t)
                nt = inst.add_prompt_tokens(seq, tokens, t, last)
                if nt is not None:
                    self._push_instance(i, nt, True)
        elif kind == _REFRESH:
            self._snapshot = self.fresh_views(t)
            self.stats.view_refreshes += 1
            if self._work_left():
                self._push_action(t + self.view_refresh_s, _REFRESH)
        elif kind == _MIGRATE_TICK:
            self._migrate(t)
            if self._work_left():
                self._push_action(t + self.router.migration_interval_s, _MIGRATE_TICK)
        elif kind == _MIGRATE_STOP:
            seq, src = payload
            inst = self.instances[src]
            if seq.state == DECODE and seq.rec.instance == src and id(seq) in self._migrating:
                inst.sync(t)
                nt = inst.request_detach(seq, t)
                if nt is not None:
                    self._push_instance(src, nt, True)
            else:
                self._migrating.pop(id(seq), None)

    def _migrate(self, t: float) -> None:
        plan = self.router.plan_migrations(self.fresh_views(t))
        for src, dst in plan:
            if src == dst:
                continue
            inst = self.instances[src]
            cands = [
                s
                for s in inst.running.values()
                if s.state == DECODE and id(s) not in self._migrating
            ]
            if not cands:
                continue
            # Cheapest to move: the fewest KV tokens (newest among equals).
            seq = min(reversed(cands), key=inst.computed_tokens)
            tokens = inst.computed_tokens(seq)
            self._migrating[id(seq)] = (dst, t, tokens)
            dt = tokens * inst.kv_bytes_per_token / self.kv_link_bytes_s
            self._push_action(t + dt, _MIGRATE_STOP, (seq, src))

    def _work_left(self) -> bool:
        return (
            self._more_arrivals
            or bool(self._later)
            or self._pieces > 0
            or self._moves > 0
            or any(i.busy for i in self.instances)
        )

    # ------------------------------------------------------------------ main loop
    def run(
        self,
        requests: Iterable[Request],
        progress: Callable[[int, float], None] | None = None,
        progress_every: int = 1000,
        check: bool = False,
    ) -> RecordTable:
        """Simulate ``requests`` (sorted by arrival) to completion; return records by id.

        ``check`` asserts every instance's invariants after every event (slow; for tests).
        """
        insts = self.instances
        router = self.router
        needs_views = router.needs_views
        needs_prefix = router.needs_prefix
        self._static = self.fresh_views(0.0)
        self._snapshot = self._static
        autoscaler = self.autoscaler
        heap = self._heap
        versions = self._versions
        ctr = self._ctr
        heappush, heappop = heapq.heappush, heapq.heappop
        it = iter(requests)
        nxt = next(it, None)
        self._more_arrivals = nxt is not None
        if nxt is not None:
            t0 = nxt.arrival_s
            if needs_views and self.view_refresh_s > 0:
                self._push_action(t0, _REFRESH)
            if getattr(router, "plan_migrations", None) is not None:
                self._push_action(t0 + router.migration_interval_s, _MIGRATE_TICK)
            if autoscaler is not None:
                autoscaler.start(self, t0)
            if self.sampler is not None:
                self.sampler.start(self, t0)
        last_arrival = -math.inf
        later = self._later
        while True:
            cand = nxt
            t = nxt.arrival_s if nxt is not None else math.inf
            if later and later[0][0] < t:
                t, _, cand = later[0]
            if cand is not None and (not heap or t <= heap[0][0]):
                req = cand
                if cand is not nxt:
                    heapq.heappop(later)
                else:
                    if t < last_arrival:
                        raise InputError(
                            f"request {req.id} arrives at {t} s, before the previous one"
                            f" ({last_arrival} s): the workload must be sorted by arrival time"
                        )
                    last_arrival = t
                    nxt = next(it, None)
                    self._more_arrivals = nxt is not None
                self.now = t
                pieces = req.prompt_chunks
                if len(pieces) > 1 and not self.stream_prompts:
                    if req.id not in self._held_back:  # sent once the whole prompt is there
                        self._held_back.add(req.id)
                        heapq.heappush(later, (t + pieces[-1][0], next(self._ctr), req))
                        continue
                    self._held_back.discard(req.id)
                    pieces = ()
                seq = Seq(req, new_record(req))
                if len(pieces) > 1:
                    seq.avail = pieces[0][1]
                    last = len(pieces) - 1
                    for j in range(1, last + 1):
                        self._pieces += 1
                        off, tokens = pieces[j]
                        self._push_action(t + off, _PIECE, (seq, tokens, j == last))
                rv = request_view(req)
                self._views[req.id] = rv
                views = self._router_views(t, seq, needs_prefix) if needs_views else self._static
                i = router.route(rv, views)
                inst = insts[i]
                inst.sync(t)
                nt = inst.enqueue(seq, t)
                if nt is not None:
                    versions[i] += 1
                    heappush(heap, (nt, next(ctr), i, versions[i]))
                self.arrived += 1
                if autoscaler is not None:
                    autoscaler.on_arrival(req, t)
                if check:
                    inst.check_invariants()
                if progress is not None and self.arrived % progress_every == 0:
                    progress(self.arrived, t)
                continue
            if not heap:
                break
            t, c, i, ver = heappop(heap)
            self.now = t
            if i < 0:
                kind, payload = self._actions.pop(c)
                self._action(t, kind, payload)
                continue
            if ver != versions[i]:
                continue
            nt = insts[i].on_event(t)
            if check:
                insts[i].check_invariants()
            if nt is not None:
                heappush(heap, (nt, next(ctr), i, versions[i]))
        if progress is not None:
            progress(self.arrived, self.now)
        if len(self.records) != self.arrived:
            raise RuntimeError(
                f"internal error: {self.arrived} requests arrived but {len(self.records)} "
                "ended; please report it with the scenario"
            )
        self.records.sort_by_id()
        return self.records
