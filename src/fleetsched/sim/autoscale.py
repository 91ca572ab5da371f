"""The fleet controller: runs an autoscaling policy against the simulator.

Every ``policy.interval_s`` it builds a :class:`~fleetsched.policies.autoscaling.FleetView`
of the scaled group and applies the policy's answer (clamped to ``[min_replicas,
max_replicas]``):

* **scale up**: a new replica is provisioned at once (its GPUs count from now) and becomes
  routable after the model-load delay, ``startup_s + weight bytes per GPU / load_gb_s``;
* **scale down** (not within ``scale_down_cooldown_s`` of the previous scaling action):
  replicas still starting are cancelled first (newest first), then ready ones are drained
  -- the router stops seeing them, they finish every request they hold and release their
  GPUs when the last one ends. The replica with the fewest requests in flight goes first,
  ties at random from the seeded generator.

GPU-seconds integrate ``tp`` x the provisioned replicas (starting, ready, draining) of the
group from the first arrival to the last finish.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetsched.core.config import AutoscalingConfig, InstanceGroup, SLOClass
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import Seq
from fleetsched.perf import get_model
from fleetsched.policies.autoscaling import FleetView


@dataclass(slots=True)
class _Starting:
    since: float
    cancelled: bool = False


class FleetController:
    def __init__(
        self,
        cfg: AutoscalingConfig,
        group: InstanceGroup,
        indices: list[int],
        make: Callable[[int, str], Instance],
        policy: Any,
        slo_classes: dict[str, SLOClass],
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.group = group
        self.policy = policy
        self.make = make
        self.slo_classes = slo_classes
        self.rng = np.random.default_rng(seed + 7919)
        weights = get_model(group.model).weight_bytes / group.tp
        self.load_s = cfg.startup_s + weights / (cfg.load_gb_s * 1e9)
        self.ready: list[int] = list(indices)
        self.starting: list[_Starting] = []
        self.draining: dict[int, float] = {}
        self._since: dict[int, float] = {}  # allocation start of ready/draining replicas
        self.gpu_seconds = 0.0
        self.scale_ups = self.scale_downs = 0
        self.replicas_max = len(indices)
        self.timeline: list[tuple[float, int]] = []
        #: (time, "up" | "ready" | "cancel" | "drain" | "stop", instance index or -1)
        self.events: list[tuple[float, str, int]] = []
        self._last_scale = -math.inf
        self._named = len(indices)
        self._t0 = 0.0
        self._t_end = 0.0
        # Observations since the last tick, and running means.
        self._arrivals = self._arrival_prompt = 0
        self._finished = self._met = 0
        self._n_prompt = self._sum_prompt = 0
        self._n_out = self._sum_out = 0

    # ------------------------------------------------------------------ accounting
    @property
    def provisioned(self) -> int:
        return len(self.ready) + len(self.starting) + len(self.draining)

    def _release(self, since: float, t: float) -> None:
        self.gpu_seconds += max(0.0, t - since) * self.group.tp
        self._t_end = max(self._t_end, t)

    def _mark(self, t: float) -> None:
        self.replicas_max = max(self.replicas_max, self.provisioned)
        self.timeline.append((t, self.provisioned))

    # ------------------------------------------------------------------ kernel hooks
    def start(self, sim: Any, t0: float) -> None:
        self._t0 = t0
        for i in self.ready:
            self._since[i] = t0
        self._mark(t0)
        sim.call_at(t0 + self.policy.interval_s, lambda t: self.tick(sim, t))

    def on_arrival(self, req: Request, t: float) -> None:
        self._arrivals += 1
        self._arrival_prompt += req.prompt_tokens
        self._n_prompt += 1
        self._sum_prompt += req.prompt_tokens

    def on_finish(self, sim: Any, seq: Seq, now: float) -> None:
        rec = seq.rec
        self._finished += 1
        if not math.isnan(rec.finish_s):
            self._n_out += 1
            self._sum_out += rec.output_tokens
            cls = self.slo_classes.get(rec.slo_class, self.slo_classes.get("default"))
            ttft = rec.first_token_s - rec.arrival_s
            tpot = (
                (rec.finish_s - rec.first_token_s) / (rec.output_tokens - 1)
                if rec.output_tokens > 1
                else 0.0
            )
            if cls is None or (ttft <= cls.ttft_s and tpot <= cls.tpot_s):
                self._met += 1
        i = rec.instance
        if i in self.draining and sim.instances[i].outstanding == 0:
            self._stop(i, sim.now)

    def finish(self, t_end: float) -> None:
        """Close the accounting at the end of the run (the last finish)."""
        for i in self.ready:
            self._release(self._since[i], t_end)
        for i in list(self.draining):
            self._release(self._since[i], t_end)
        for s in self.starting:
            self._release(s.since, t_end)
        self._t_end = t_end

    # ------------------------------------------------------------------ decisions
    def _capacity(self, inst: Instance) -> tuple[float, float]:
        out = self._sum_out / self._n_out if self._n_out else 256.0
        prompt = self._sum_prompt / self._n_prompt if self._n_prompt else 1000.0
        ctx = max(1.0, prompt + out / 2)
        seqs = max(1, min(inst.cfg.max_num_seqs, int(inst.kv.num_blocks * inst.bt // ctx)))
        step = inst.step_model.step_time(0, 0.0, seqs, int(seqs * ctx))
        return seqs / step, out

    def tick(self, sim: Any, t: float) -> None:
        insts = sim.instances
        cap, mean_out = self._capacity(insts[self.ready[0] if self.ready else 0])
        fv = FleetView(
            now=t,
            interval_s=self.policy.interval_s,
            ready=[insts[i].view(t) for i in self.ready],
            starting=len(self.starting),
            draining=len(self.draining),
            arrivals=self._arrivals,
            arrival_prompt_tokens=self._arrival_prompt,
            finished=self._finished,
            finished_met_slo=self._met,
            replica_decode_tokens_s=cap,
            mean_output_tokens=mean_out,
            min_replicas=self.cfg.min_replicas,
            max_replicas=self.cfg.max_replicas,
        )
        self._arrivals = self._arrival_prompt = self._finished = self._met = 0
        want = int(self.policy.desired(fv))
        want = min(max(want, self.cfg.min_replicas), self.cfg.max_replicas)
        have = len(self.ready) + len(self.starting)
        if want > have:
            for _ in range(want - have):
                self._scale_up(sim, t)
            self._last_scale = t
        elif want < have and t - self._last_scale >= self.cfg.scale_down_cooldown_s:
            for _ in range(have - want):
                self._scale_down(sim, t)
            self._last_scale = t
        if sim.work_left():
            sim.call_at(t + self.policy.interval_s, lambda t: self.tick(sim, t))

    def _scale_up(self, sim: Any, t: float) -> None:
        s = _Starting(t)
        self.starting.append(s)
        self.scale_ups += 1
        self.events.append((t, "up", -1))
        self._mark(t)

        def ready(now: float) -> None:
            if s.cancelled:
                return
            self.starting.remove(s)
            i = len(sim.instances)
            sim.add_instance(self.make(i, f"{self.group.name}-{self._named}"))
            self._named += 1
            self.ready.append(i)
            self._since[i] = s.since
            sim.set_routable(i, True, now)
            self.events.append((now, "ready", i))
            self._mark(now)

        sim.call_at(t + self.load_s, ready)

    def _scale_down(self, sim: Any, t: float) -> None:
        if self.starting:
            self.scale_downs += 1
            s = self.starting.pop()
            s.cancelled = True
            self._release(s.since, t)
            self.events.append((t, "cancel", -1))
            self._mark(t)
            return
        if len(self.ready) <= 1:
            return
        self.scale_downs += 1
        loads = [sim.instances[i].outstanding for i in self.ready]
        least = min(loads)
        cands = [i for i, x in zip(self.ready, loads, strict=True) if x == least]
        i = cands[int(self.rng.integers(len(cands)))] if len(cands) > 1 else cands[0]
        self.ready.remove(i)
        self.draining[i] = t
        sim.set_routable(i, False, t)
        self.events.append((t, "drain", i))
        if sim.instances[i].outstanding == 0:
            self._stop(i, t)
        self._mark(t)

    def _stop(self, i: int, t: float) -> None:
        del self.draining[i]
        self._release(self._since.pop(i), t)
        self.events.append((t, "stop", i))
        self._mark(t)

    def summary(self) -> dict[str, Any]:
        span = self._t_end - self._t0
        return {
            "policy": type(self.policy).__name__,
            "gpu_seconds": self.gpu_seconds,
            "replicas_mean": self.gpu_seconds / self.group.tp / span if span > 0 else math.nan,
            "replicas_max": self.replicas_max,
            "scale_ups": self.scale_ups,
            "scale_downs": self.scale_downs,
            "load_s": self.load_s,
        }
