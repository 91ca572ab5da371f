"""The wall-clock driver of one :class:`~fleetsched.engine.Instance` (the emulator's engine).

The simulator drives an ``Instance`` with its event kernel; this drives the very same object
with the real clock, as vLLM's ``AsyncLLM`` drives its engine core:

* **Time.** Engine time is wall time since start times ``speedup``. Each engine step takes
  its modelled time; the step's end is a timer ``model_dt / speedup`` wall seconds after its
  start. The instance runs with fast-forward off, so every step is an event.
* **Tokens.** When a step ends, every request in its batch has its next token: the loop
  reads ``Instance.generated_tokens`` of each running request and wakes its stream.
* **Steps chain in model time.** A step ends at its exact modelled time even when the timer
  fires a little late (timer resolution, a busy event loop), so lateness delays the tokens'
  delivery but never accumulates. A timer later than ``max_lag_s`` wall seconds is a *slip*:
  the engine re-anchors at the present (the step took longer than modelled) and counts it.
  Arrivals are placed at engine time now, clamped between the last step end and the pending
  one, so the engine's clock never runs backwards.
* **Abort.** A stream whose client went away is aborted with ``Instance.abort``: its KV is
  freed at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fleetsched.api.filler import eos_length, output_ids, prompt_digest
from fleetsched.core.hashing import block_hashes
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import Seq
from fleetsched.metrics.records import RequestRecord
from fleetsched.sim.kernel import new_record


@dataclass(slots=True, eq=False)
class Stream:
    """One request's output as the engine produces it."""

    seq: Seq
    token_ids: np.ndarray  # the tokens it will produce (len = its output length)
    finish_reason: str  # "length" (max_tokens reached) or "stop" (emulated end of sequence)
    produced: int = 0  # tokens produced so far
    done: bool = False  # finished, rejected or aborted
    rejected: bool = False
    aborted: bool = False
    last_token_t: float = math.nan  # engine time of the latest token
    _waiter: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def record(self) -> RequestRecord:
        return self.seq.rec

    @property
    def prompt_tokens(self) -> int:
        return self.seq.req.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        return self.seq.rec.cached_prompt_tokens

    async def wait(self, seen: int) -> int:
        """Wait until more than ``seen`` tokens exist or the stream ends; return how many."""
        while self.produced <= seen and not self.done:
            fut = asyncio.get_running_loop().create_future()
            self._waiter = fut
            await fut
        return self.produced

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)


@dataclass(slots=True)
class LoopStats:
    steps: int = 0  # step ends (an idle engine's wake-up is not one)
    slips: int = 0  # step ends later than max_lag_s (re-anchored)
    lateness_sum_s: float = 0.0  # wall seconds timers fired after their step's modelled end
    lateness_max_s: float = 0.0
    tokens: int = 0  # output tokens delivered
    submitted: int = 0


class EngineLoop:
    """Runs ``instance`` in real time (divided by ``speedup``) inside the running event loop.

    ``on_token(stream, now, first)`` and ``on_end(stream, now)`` (optional) observe every token
    event (before ``stream.last_token_t`` moves to ``now``) and every end, in engine seconds;
    ``on_step(lateness_s)`` every step end's wall lateness (for metrics).
    """

    def __init__(
        self,
        instance: Instance,
        *,
        speedup: float = 1.0,
        seed: int = 0,
        eos_mean: float = 256.0,
        max_lag_s: float = 0.05,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if instance.fast_forward:
            raise ValueError("the emulator needs an Instance built with fast_forward=False")
        if speedup <= 0:
            raise ValueError("speedup must be > 0")
        self.inst = instance
        self.speedup = float(speedup)
        self.seed = seed
        self.eos_mean = eos_mean
        self.max_lag_s = max_lag_s
        self.clock = clock
        self.stats = LoopStats()
        self.on_token: Callable[[Stream, float, bool], None] | None = None
        self.on_end: Callable[[Stream, float], None] | None = None
        self.on_step: Callable[[float], None] | None = None
        self._t0 = clock()
        self._last_t = 0.0  # engine time of the last event
        self._pending_t: float | None = None  # engine time of the next step end
        self._timer: asyncio.TimerHandle | None = None
        self._streams: dict[int, Stream] = {}  # id(seq) -> stream, until it ends
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        instance.on_finish = self._finished

    # ------------------------------------------------------------------ time
    def engine_time(self) -> float:
        """Engine seconds since start (wall seconds times ``speedup``), unclamped."""
        return (self.clock() - self._t0) * self.speedup

    def now(self) -> float:
        """Engine time for a new event: now, but never before the last event nor after the
        pending step end."""
        t = max(self.engine_time(), self._last_t)
        if self._pending_t is not None and t > self._pending_t:
            t = self._pending_t
        return t

    @property
    def active(self) -> int:
        """Requests submitted and not ended."""
        return len(self._streams)

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        prompt_ids: list[int],
        max_tokens: int,
        *,
        min_tokens: int = 0,
        ignore_eos: bool = False,
        tenant: str = "default",
        priority: int = 0,
    ) -> Stream:
        """Queue a request now; returns its stream (``rejected`` if it can never fit)."""
        digest = prompt_digest(prompt_ids)
        n, reason = max_tokens, "length"
        if not ignore_eos:
            eos = max(eos_length(self.seed, digest, self.eos_mean), min_tokens, 1)
            if eos < max_tokens:
                n, reason = eos, "stop"
        bt = self.inst.bt
        hashes = block_hashes(prompt_ids, bt) if self.inst.cfg.enable_prefix_caching else ()
        now = self.now()
        req = Request(
            id=self._next_id,
            arrival_s=now,
            prompt_tokens=len(prompt_ids),
            output_tokens=n,
            block_hashes=hashes,
            hash_block_tokens=bt,
            tenant=tenant,
            priority=priority,
        )
        self._next_id += 1
        seq = Seq(req, new_record(req))
        stream = Stream(seq, output_ids(self.seed, digest, n), reason)
        self._streams[id(seq)] = stream
        self.stats.submitted += 1
        idle = not self.inst.busy
        nt = self.inst.enqueue(seq, now)
        if nt is not None:
            self._arm(nt, wakeup=idle)
        return stream

    def abort(self, stream: Stream) -> None:
        """The client went away: drop the request and free its KV now."""
        if stream.done:
            return
        stream.aborted = True
        nt = self.inst.abort(stream.seq, self.now())
        if nt is not None:  # never with fast-forward off; kept for safety
            self._arm(nt)

    # ------------------------------------------------------------------ engine events
    def _arm(self, t: float, wakeup: bool = False) -> None:
        """Fire at engine time ``t``: a step end, or (``wakeup``) an idle engine's start."""
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._pending_t = t
        delay = self._t0 + t / self.speedup - self.clock()
        self._timer = self._loop.call_later(max(delay, 0.0), self._fire, t, wakeup)

    def _fire(self, t: float, wakeup: bool) -> None:
        self._timer = None
        self._pending_t = None
        st = self.stats
        late = self.clock() - (self._t0 + t / self.speedup)
        if not wakeup:
            st.steps += 1
            if late > 0:
                st.lateness_sum_s += late
                if late > st.lateness_max_s:
                    st.lateness_max_s = late
            if self.on_step is not None:
                self.on_step(max(late, 0.0))
        if late > self.max_lag_s:
            st.slips += not wakeup
            t = max(t, self.engine_time())
        self._last_t = t
        inst = self.inst
        nt = inst.on_event(t)
        streams = self._streams
        gen = inst.generated_tokens
        on_token = self.on_token
        for seq in inst.running.values():
            s = streams.get(id(seq))
            if s is None:
                continue
            n = gen(seq)
            if n > s.produced:
                first = s.produced == 0
                st.tokens += n - s.produced
                s.produced = n
                if on_token is not None:
                    on_token(s, t, first)
                s.last_token_t = t
                s._wake()
        if nt is not None:
            self._arm(nt)

    def _finished(self, seq: Seq, now: float) -> None:
        """Instance callback: ``seq`` finished (or was rejected / aborted when ``now`` is NaN)."""
        s = self._streams.pop(id(seq), None)
        if s is None:
            return
        if math.isnan(now):
            s.rejected = not s.aborted
        else:
            n = seq.generated
            if n > s.produced:
                first = s.produced == 0
                self.stats.tokens += n - s.produced
                s.produced = n
                if self.on_token is not None:
                    self.on_token(s, now, first)
                s.last_token_t = now
        s.done = True
        if self.on_end is not None:
            self.on_end(s, now)
        s._wake()

    def close(self) -> None:
        """Stop the engine timer and end every stream (as aborted)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for s in list(self._streams.values()):
            self.abort(s)


__all__ = ["EngineLoop", "LoopStats", "Stream"]
