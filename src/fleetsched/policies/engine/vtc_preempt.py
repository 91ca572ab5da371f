"""Preemptive fair sharing: a waiting request of an under-served tenant preempts a running
request of the most-served one (VTC counters; the preemption-based fairness FastSwitch serves).

VTC (Sheng et al., OSDI 2024; ``ordering: vtc``) orders the waiting queue by each tenant's
virtual token counter but never takes a running request out: a tenant that got in first keeps
its seats and KV until its requests finish. Preemption-based fairness schedulers adjust
priorities while requests run and preempt to enforce them, which makes context switches
frequent (FastSwitch, Shen et al., arXiv:2411.18424, the workload its swap manager targets).
This policy does that with VTC's counters:

- ``victim_for_admission(head, running)``: when the head of the waiting queue cannot start (no
  seat or no memory), the newest running request of the running tenant with the largest
  counter, if that counter exceeds the head tenant's by more than ``min_gap`` (weighted tokens,
  the counter's unit); else None. Only requests that have decoded at least one step since they
  last started decoding are candidates: admitting raises a tenant's counter by the prompt at
  once, so two tenants could otherwise take each other's seats every step with no request
  making progress.
- ``victim(running)`` (out of memory): the newest running request of the running tenant with
  the largest counter.

Needs ``ordering: vtc`` (its counters, and it queues the victim behind the head because the
victim's tenant has the larger counter); with another order only ``victim`` applies, by newest.
``min_gap`` keeps two tenants close in service from trading places every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine.vtc import VTCQueue

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class VTCVictim:
    def __init__(self, min_gap: float = 0.0) -> None:
        if not min_gap >= 0:
            raise InputError(f"min_gap must be >= 0, got {min_gap!r}")
        self.min_gap = float(min_gap)
        self._vtc: VTCQueue | None = None
        self._engine: Instance | None = None

    def bind(self, engine: Instance) -> None:
        q = engine.waiting
        self._vtc = q if isinstance(q, VTCQueue) else None
        self._engine = engine

    def _most_served(self, running: list[Seq], settled: bool = False) -> tuple[Seq | None, float]:
        """The newest running request (that has decoded a step since it last started decoding,
        if ``settled``) of the tenant with the largest counter, and that counter."""
        vtc, eng = self._vtc, self._engine
        assert vtc is not None
        counters: dict[str, float] = {}
        best: Seq | None = None if settled else running[-1]
        best_c = -float("inf")
        for seq in reversed(running):  # newest first: ties keep the newest
            if settled and (eng is None or eng.decode_steps(seq) < 1):
                continue
            t = seq.req.tenant
            c = counters.get(t)
            if c is None:
                c = counters[t] = vtc.counter(t)
            if c > best_c:
                best, best_c = seq, c
        return best, best_c

    def victim(self, running: list[Seq]) -> Seq:
        if self._vtc is None:
            return running[-1]
        v = self._most_served(running)[0]
        assert v is not None
        return v

    def victim_for_admission(self, head: Seq, running: list[Seq]) -> Seq | None:
        vtc = self._vtc
        if vtc is None or not running:
            return None
        v, c = self._most_served(running, settled=True)
        if v is None or v.req.tenant == head.req.tenant:
            return None
        return v if c > vtc.counter(head.req.tenant) + self.min_gap else None
