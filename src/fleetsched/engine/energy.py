"""Energy metering of an instance: each step's joules (``perf/power.py``), split among the
requests in it.

A step's energy is shared per token computed: a prefill chunk of ``c`` tokens in a step that
computes ``T`` tokens (chunks plus one per decoding request) gets ``c / T`` of it, each
decoding request ``1 / T``. Decoders are charged lazily, like their tokens: the instance keeps
``e_dec``, the energy one decoding request has been charged since the start, and a request
that decodes from ``e_dec = a`` to ``e_dec = b`` is charged ``b - a`` (``Instance``'s
``_enter_decode`` / ``_leave_decode``). Swap-in and handover copies charge nothing extra: the
copy time is in the step's duration, shared like the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fleetsched.perf.power import StepPower

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance


class EnergyMeter:
    __slots__ = ("busy_j", "power")

    def __init__(self, power: StepPower) -> None:
        self.power = power
        #: Joules of every step run so far (idle time between steps not included).
        self.busy_j = 0.0

    @property
    def idle_w(self) -> float:
        return self.power.idle_w

    def on_complete(self, inst: Instance, now: float) -> None:
        """The step or run in flight ended at ``now``: meter it (call before it is applied)."""
        p = self.power
        plan = inst._plan
        if plan:  # one mixed step (prefill chunks, maybe decodes)
            nd, ctx, _ = inst._mix
            pf = 0
            pairs = 0.0
            for seq, chunk in plan:
                pf += chunk
                pairs += chunk * (seq.computed + (chunk + 1) / 2)
            e = p.energy_j(pf, pairs, nd, ctx, now - inst._start)
            tokens = pf + nd
            if tokens:
                share = e / tokens
                for seq, chunk in plan:
                    seq.energy_j += chunk * share
                inst.e_dec += share
        else:  # k decode steps, contexts growing by one token per request per step
            k, nd = inst._k, inst.ndec
            base = inst.base_sum + nd * (inst.dstep - inst._applied + 1)
            line = inst._line  # the run's step-time line, when it was planned from one
            if line is not None:  # the usual case: O(1) in closed form
                e = p.decode_run_energy_j(nd, base, k, now - inst._start, line)
                if e is not None:
                    inst.e_dec += e / nd
                    self.busy_j += e
                    return
            ends = inst._ends
            if k <= 8:
                e = 0.0
                t0 = inst._start
                for j in range(k):
                    t1 = ends[j]
                    e += p.energy_j(0, 0.0, nd, base + nd * j, t1 - t0)
                    t0 = t1
            else:
                dts = np.diff(np.asarray(ends[:k], dtype=np.float64), prepend=inst._start)
                ctx = base + nd * np.arange(k, dtype=np.float64)
                e = p.decode_energy_j(nd, ctx, dts)
            if nd:
                inst.e_dec += e / nd
        self.busy_j += e
