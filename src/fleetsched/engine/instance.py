"""One serving instance, scheduled as vLLM v1 schedules it.

Each engine step fills a token budget (``max_num_batched_tokens``) with the running decodes
first, then running partial prefills, then waiting requests (chunked prefill), under the
``max_num_seqs`` cap. KV memory is paged in blocks with prefix caching (:class:`KVCache`).
When a step's blocks do not fit, running requests are preempted (newest first by default),
by recompute or swap.

Decoding requests are accounted lazily: a step adds one token to every one of them, so the
engine keeps a step counter ``dstep`` and each decoder stores ``base = computed - dstep``.
A step then costs O(1) in the batch size: new blocks needed come from a histogram of
``base mod block_tokens``, the attended context from ``sum(base)``, finishes from a heap.

**Fast-forward.** When a step would only decode and nothing can enter the batch before the
next finish, the engine plans a *run* of k decode steps at once (k bounded by the next finish
and by free KV blocks) and computes their end times in one vectorised call. Another event
that reaches this instance mid-run (a new request) truncates the run at the end of the step
in progress, exactly where a step-by-step engine would next schedule; ``sync(t)`` exposes the
state at any time ``t`` inside a run. Results are identical to step-by-step simulation.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import TypeVar

import numpy as np

from fleetsched.core.config import EngineConfig
from fleetsched.core.views import InstanceView
from fleetsched.engine.context_switch import ContextSwitch
from fleetsched.engine.defaults import resolve_engine_config
from fleetsched.engine.determinism import DetBatch, DeterminismCost
from fleetsched.engine.energy import EnergyMeter
from fleetsched.engine.kv_cache import IDLE as _IDLE
from fleetsched.engine.kv_cache import KVCache
from fleetsched.engine.sequence import DECODE, DONE, PREFILL, WAITING, Seq
from fleetsched.errors import InputError
from fleetsched.perf import StepTimeModel, get_gpu, get_model
from fleetsched.policies.engine.aggressive import AggressiveAdmission
from fleetsched.policies.engine.base import (
    AdmissionPolicy,
    PreemptionPolicy,
    RetentionPolicy,
    WaitingQueue,
)
from fleetsched.policies.engine.fcfs import FCFSQueue
from fleetsched.policies.engine.newest import NewestVictim

T = TypeVar("T")


def _known(lookup: Callable[[str], T], name: str) -> T | None:
    """The catalog entry called ``name``, or None for an empty or unknown name."""
    if not name:
        return None
    try:
        return lookup(name)
    except InputError:
        return None


@dataclass(slots=True)
class EngineStats:
    steps: int = 0  # engine steps simulated
    runs: int = 0  # scheduling decisions (a fast-forward run counts once)
    busy_s: float = 0.0
    preemptions: int = 0
    recomputed_tokens: int = 0  # KV thrown away by recompute preemption
    swapped_blocks: int = 0  # blocks moved to and from host memory
    switch_s: float = 0.0  # time added to steps by swapping (context-switch cost)
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (first admission)
    served_tokens: int = 0  # prompt + output tokens of finished requests
    rejected: int = 0  # requests that can never run here: prompt >= max_model_len, or no room
    aborted: int = 0  # requests the client gave up on (``abort``)


class Instance:
    """A serving engine driven by the simulator through ``enqueue``, ``sync`` and ``on_event``.

    ``on_event(t)`` is called at the end of the current step or run and returns the time of the
    next event (or None when idle). ``enqueue(seq, t)`` returns a new event time when the
    caller must (re)schedule one, else None.
    """

    def __init__(
        self,
        index: int,
        num_blocks: int,
        step_model: StepTimeModel,
        engine: EngineConfig | None = None,
        *,
        name: str = "",
        model: str = "",
        gpu: str = "",
        role: str = "mixed",
        kv_bytes_per_token: float = 0,
        host_link_bytes_s: float = 25e9,
        ordering: WaitingQueue | None = None,
        admission: AdmissionPolicy | None = None,
        preemption: PreemptionPolicy | None = None,
        fast_forward: bool = True,
        max_run_steps: int = 512,
        on_finish: Callable[[Seq, float], None] | None = None,
        context_switch: ContextSwitch | None = None,
        determinism: DeterminismCost | None = None,
    ) -> None:
        cfg = engine or EngineConfig()
        if cfg.max_num_batched_tokens is None or cfg.max_num_seqs is None or not cfg.max_model_len:
            cfg = resolve_engine_config(cfg, _known(get_gpu, gpu), _known(get_model, model))
        self.index = index
        self.name = name or f"inst{index}"
        self.model, self.gpu, self.role = model, gpu, role
        self.cfg = cfg
        self.budget: int = cfg.max_num_batched_tokens  # type: ignore[assignment]  # resolved
        self.max_num_seqs: int = cfg.max_num_seqs  # type: ignore[assignment]
        #: Context length (prompt + output); None when the model is unknown (no limit).
        self.max_model_len = cfg.max_model_len
        self.bt = cfg.block_tokens
        self.kv = KVCache(num_blocks)
        self._caching = cfg.enable_prefix_caching
        self.step_model = step_model
        #: (a, b) per decode count n with step_time(0, 0.0, n, c) == a + c * b bitwise, when
        #: the step model gives that form (``decode_line``); None: plan runs step by step.
        self._decode_line = getattr(step_model, "decode_line", None)
        self._lines: dict[int, tuple[float, float]] | None = (
            {} if self._decode_line is not None else None
        )
        self.kv_bytes_per_token = kv_bytes_per_token
        self.host_link_bytes_s = host_link_bytes_s
        #: Swap cost model (None: bytes over ``host_link_bytes_s``, added to the step).
        self.switch = context_switch
        self._overlap = context_switch is not None and context_switch.overlap
        #: How deterministic requests are served (None: not enforced); ``ndet`` and
        #: ``det_base_sum`` track its decoders as ``ndec`` and ``base_sum`` track all.
        self.determinism = determinism
        self.ndet = 0
        self.det_base_sum = 0
        self.waiting: WaitingQueue = ordering if ordering is not None else FCFSQueue()
        self.admission: AdmissionPolicy = admission or AggressiveAdmission()
        self.preemption: PreemptionPolicy = preemption or NewestVictim()
        self.fast_forward = fast_forward
        self.max_run_steps = max_run_steps if fast_forward else 1
        self._horizon = min(128, self.max_run_steps)
        self.on_finish = on_finish
        #: Called once per request when its first output token is produced (the router's
        #: first-token notification).
        self.on_first_token: Callable[[Seq, float], None] | None = None
        #: Called when a request leaves with its KV (prefill done on a prefill instance, or
        #: live migration); the simulator moves it on.
        self.on_detach: Callable[[Seq, float], None] | None = None
        self._to_detach: list[Seq] = []
        #: Energy metering (engine/energy.py) and KV retention across tool gaps
        #: (policies/engine/retention_*.py); None: off.
        self.meter: EnergyMeter | None = None
        self.retention: RetentionPolicy | None = None
        self.e_dec = 0.0  # energy charged to one decoding request so far (engine/energy.py)
        self.healthy = True
        self.stats = EngineStats()
        # Per-tenant service (VTC-style fair sharing reads it): prompt tokens computed and
        # output tokens generated; decoders' share is derived lazily from dstep.
        self._svc_prompt: dict[str, int] = {}
        self._svc_out: dict[str, int] = {}
        self._dec_n: dict[str, int] = {}
        self._dec_entry: dict[str, int] = {}
        self._step_allocated = False
        policies = (self.waiting, self.admission, self.preemption)
        for p in policies:
            bind = getattr(p, "bind", None)
            if bind is not None:
                bind(self)
        self._finish_hooks = [p.on_finish for p in policies if hasattr(p, "on_finish")]
        self._victim_for_admission = getattr(self.preemption, "victim_for_admission", None)

        self.running: dict[int, Seq] = {}  # admission order, oldest first
        self.prefilling: dict[int, Seq] = {}  # running requests still in prefill
        self.dstep = 0
        self.ndec = 0
        self.base_sum = 0
        self.cnt = [0] * self.bt  # decoders by base mod block_tokens
        self._finish_heap: list[tuple[int, int, int, Seq]] = []
        # Decoders whose output fills blocks with shared keys, by base mod block_tokens: a step
        # registers the blocks it fills in the prefix cache (see _cache_decodes).
        self._share: list[dict[int, Seq]] = [{} for _ in range(self.bt)]
        self._nshare = 0
        self._order = 0
        self.outstanding = 0  # dispatched, unfinished requests
        self.inflight_prompt_tokens = 0
        self._aborted_waiting = 0  # aborted requests still in the waiting queue (see abort)

        # The step or run in flight.
        self.busy = False
        self._plan: list[tuple[Seq, int]] = []  # prefill chunks of the current step
        self._ends: list[float] = []  # end times of the steps of the current run
        self._period: list[int] = [0]  # prefix sums of a run's new blocks over one period
        self._k = 0
        self._applied = 0  # steps of the run already applied by sync()
        self._alloc = 0  # steps of the run whose blocks are allocated
        self._start = 0.0  # when the current step or run started
        self._horizon = 8  # steps the next fast-forward run may plan
        self._extra_s = 0.0  # swap time added to the step being planned
        self._mix: tuple[int, int, float] = (0, 0, 0.0)  # decodes, ctx sum, extra s of the step
        self._line: tuple[float, float] | None = None  # decode_line of the run in flight

    # ------------------------------------------------------------------ capacity
    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.bt)

    def output_tokens(self, seq: Seq) -> int:
        """Output tokens ``seq`` will produce here: as many as the workload says, but generation
        stops at ``max_model_len`` tokens in all, as vLLM's ``check_stop`` stops it."""
        out = seq.req.output_tokens
        if self.max_model_len is not None:
            out = min(out, self.max_model_len - seq.req.prompt_tokens)
        return out

    def fits_ever(self, seq: Seq) -> bool:
        """Whether the request can ever run here: its prompt is shorter than ``max_model_len``
        (vLLM rejects a prompt of ``max_model_len`` tokens or more: it leaves no room for an
        output token), its KV at the end (prompt + output - 1 tokens) fits the cache, and
        without chunked prefill any (re)prefill fits one step."""
        r = seq.req
        if self.max_model_len is not None and r.prompt_tokens >= self.max_model_len:
            return False
        tokens = r.prompt_tokens + self.output_tokens(seq) - 1
        if self.blocks_for(tokens) > self.kv.num_blocks:
            return False
        if not self.cfg.enable_chunked_prefill:
            cap = min(self.budget, self.cfg.long_prefill_token_threshold or self.budget)
            return tokens + 1 <= cap
        return True

    # ------------------------------------------------------------------ external API
    def enqueue(self, seq: Seq, now: float) -> float | None:
        """Accept a routed request at ``now`` (call ``sync(now)`` first).

        A request whose KV was moved here (``seq.transferred``) resumes decoding in the step
        its blocks are allocated. After a prefill on a prefill instance it joins the back of the
        waiting queue, as vLLM's ``add_request`` appends it; after a live migration
        (``seq.migrated``) the front, ahead of new work.
        """
        self.outstanding += 1
        self.inflight_prompt_tokens += seq.req.prompt_tokens
        if math.isnan(seq.rec.dispatch_s):
            seq.rec.dispatch_s = now
        seq.rec.instance = self.index
        if not self.fits_ever(seq):
            self._reject(seq, now)
            return None
        seq.out_tokens = self.output_tokens(seq)
        if seq.transferred:
            seq.swapped = True
            if seq.migrated:
                seq.migrated = False
                self.waiting.push_front(seq)
            else:
                self.waiting.push(seq)
        else:
            seq.target = seq.req.prompt_tokens
            self.waiting.push(seq)
        if not self.busy:
            self.busy = True
            self._k = 0
            return now  # wake up at ``now``, after every arrival of that instant
        if (
            self.cfg.preemptible_prefill
            and self._k == 1
            and self._plan
            and self.waiting.peek(now) is seq
        ):
            return self._cut_prefill(seq, now)
        return self.truncate(now)

    @staticmethod
    def _more_urgent(a: Seq, b: Seq) -> bool:
        ra, rb = a.req, b.req
        if ra.priority != rb.priority:
            return ra.priority > rb.priority
        return ra.deadline_s is not None and (
            rb.deadline_s is None or ra.deadline_s < rb.deadline_s
        )

    def _cut_prefill(self, urgent: Seq, now: float) -> float | None:
        """FlowPrefill-style preemptible prefill: the largest prefill chunk of the step in
        progress stops at the next ``prefill_yield_tokens`` boundary reached after ``now`` and
        yields to ``urgent``. Returns the step's new end time, or None if nothing changes."""
        idx = max(range(len(self._plan)), key=lambda i: self._plan[i][1])
        victim, chunk = self._plan[idx]
        if victim.state != PREFILL or not self._more_urgent(urgent, victim):
            return None
        nd, ctx_sum, extra = self._mix
        other_tokens = 0
        other_pairs = 0.0
        for i, (s, c) in enumerate(self._plan):
            if i != idx:
                other_tokens += c
                other_pairs += c * (s.computed + (c + 1) / 2)
        g = self.cfg.prefill_yield_tokens
        done = chunk
        end = self._ends[0]
        others = [(s, c) for i, (s, c) in enumerate(self._plan) if i != idx]
        for d in range(0, chunk, g):
            step = self._step_time(
                other_tokens + d,
                other_pairs + d * (victim.computed + (d + 1) / 2),
                nd,
                ctx_sum,
                [*others, (victim, d)],
            )
            t = self._start + self._with_switch(step, extra)
            if t >= now:
                done, end = d, t
                break
        if done == chunk or not self._shrink(victim, chunk, done):
            return None
        self._plan[idx] = (victim, done)
        victim.yield_to = urgent
        self._ends = [end]
        return end

    def _shrink(self, seq: Seq, chunk: int, done: int) -> bool:
        """Give back the blocks of the part of ``chunk`` that will not be computed."""
        keep_full = (seq.computed + done) // self.bt
        held = seq.held
        n = len(held)
        if seq.done > keep_full:
            # The blocks this chunk cached past the cut (held is in block order).
            cut = set(seq.keys[keep_full : seq.done])  # type: ignore[index]
            while n and held[n - 1] in cut:
                n -= 1
        rc = self.kv.rc
        if any(rc[k] != 1 for k in held[n:]):
            return False  # another request already shares those blocks: do not cut
        for k in held[n:]:
            del rc[k]
        del held[n:]
        seq.done = min(seq.done, keep_full)
        keep = self.blocks_for(seq.computed + done)
        self.kv.release([], seq.blocks - keep)
        seq.blocks = keep
        seq.chunk = done
        return True

    def _reject(self, seq: Seq, now: float) -> None:
        """Drop a request that can never run here (recorded with no finish time)."""
        self.stats.rejected += 1
        seq.state = WAITING
        self._done(seq, math.nan)

    def truncate(self, now: float) -> float | None:
        """Something new reached this instance at ``now``: end the run after the step in
        progress. Returns the new end time, or None when the current end stands."""
        if self._k <= 1 or self._applied + 1 >= self._k:
            return None
        self._k = self._applied + 1
        self._horizon = min(128, self.max_run_steps)
        return self._ends[self._applied]

    def sync(self, now: float) -> None:
        """Bring a fast-forward run up to ``now``: apply the steps that ended before ``now`` and
        allocate the blocks of the step in progress."""
        k = self._k
        if k <= 1:
            return
        m = bisect_left(self._ends, now)
        if m >= k:
            m = k - 1  # the last step is applied by on_event
        if m > self._applied:
            self.dstep += m - self._applied
            self._applied = m
        a = m + 1
        if a > self._alloc:
            self._alloc_steps(a)

    def _run_blocks(self, j: int) -> int:
        """New KV blocks taken by steps 1..j of the current run (step 0's are taken)."""
        p = self._period
        q, r = divmod(j, self.bt)
        return q * p[-1] + p[r]

    def on_event(self, now: float) -> float | None:
        """The current step or run ended at ``now``: apply it and schedule the next one."""
        if self._k:
            self._complete(now)
        if self._to_detach:
            for seq in self._to_detach:
                if seq.state == DECODE:
                    self._detach(seq, now)
            self._to_detach = []
        return self._schedule(now)

    def abort(self, seq: Seq, now: float) -> float | None:
        """Drop ``seq`` at ``now`` wherever it is, as vLLM aborts a request whose client went
        away: its KV blocks are freed at once (cached prefix blocks stay cached, unreferenced),
        it produces no more tokens and it ends unfinished (``finish_s`` NaN), with the
        engine policies' ``on_finish`` hooks and ``on_finish`` called as for a rejected
        request. Call ``sync(now)`` first. The step in progress keeps its planned end time; a
        fast-forward run is cut after it (the new end time is returned, else None).

        A waiting request leaves the queue when it reaches the head (the ordering policies
        have no removal), costing nothing meanwhile; ``view().queue_len`` excludes it.
        """
        if seq.state == DONE:
            return None
        decoding = seq.state == DECODE
        if decoding:
            blocks = self.blocks_held(seq)
            seq.generated += self.dstep - seq.entry
            self._leave_decode(seq)
            seq.computed = self.dstep + seq.base
        elif seq.state == PREFILL:
            del self.prefilling[id(seq)]
            blocks = seq.blocks
        else:  # waiting (possibly swapped out: its KV is in host memory, nothing to free here)
            self._aborted_waiting += 1
            blocks = 0
        if blocks or seq.held:
            self._release(seq, blocks)
        self.stats.aborted += 1
        self._done(seq, math.nan)
        return self.truncate(now) if decoding else None

    def add_prompt_tokens(self, seq: Seq, tokens: int, now: float, last: bool) -> float | None:
        """``tokens`` more of ``seq``'s streamed prompt arrived at ``now`` (``last``: the whole
        prompt is there now). Call ``sync(now)`` first; returns a new event time or None."""
        seq.avail = 1 << 62 if last else seq.avail + tokens
        if seq.state not in (WAITING, PREFILL):
            return None
        if not self.busy:
            self.busy = True
            self._k = 0
            return now
        return self.truncate(now)

    def request_detach(self, seq: Seq, now: float) -> float | None:
        """Take decoding ``seq`` out at the end of the step in progress (live migration's
        stop-the-world stage). Call ``sync(now)`` first; returns a new event time or None."""
        self._to_detach.append(seq)
        if not self.busy:  # cannot happen while seq decodes, kept for safety
            self.busy = True
            self._k = 0
            return now
        return self.truncate(now)

    def _detach(self, seq: Seq, now: float) -> None:
        """Remove ``seq`` with its progress kept (KV leaves for another instance)."""
        if seq.state == DECODE:
            seq.generated += self.dstep - seq.entry
            self._leave_decode(seq)
            seq.computed = self.dstep + seq.base
            blocks = self.blocks_for(seq.computed)
        else:
            blocks = seq.blocks
        self._release(seq, blocks)
        self.running.pop(id(seq), None)
        seq.state = WAITING
        seq.transferred = True
        self.outstanding -= 1
        self.inflight_prompt_tokens -= seq.req.prompt_tokens
        if self.on_detach is not None:
            self.on_detach(seq, now)

    # ------------------------------------------------------------------ views
    def cached_prefix_tokens(self, seq: Seq, now: float | None = None) -> int:
        """:meth:`cached_prompt_tokens` as of ``now`` if given (synced first where caching is
        on): the call a runtime makes on any engine kind."""
        if now is not None and self._caching:
            self.sync(now)
        return self.cached_prompt_tokens(seq)

    def view(self, now: float, seq: Seq | None = None, with_prefix: bool = False) -> InstanceView:
        self.sync(now)
        kv = self.kv
        cached = self.cached_prompt_tokens(seq) if with_prefix and seq is not None else 0
        return InstanceView(
            index=self.index,
            name=self.name,
            model=self.model,
            gpu=self.gpu,
            role=self.role,
            healthy=self.healthy,
            queue_len=len(self.waiting) - self._aborted_waiting,
            running=len(self.running),
            kv_utilization=kv.used / kv.num_blocks,
            free_blocks=kv.free,
            total_blocks=kv.num_blocks,
            inflight_tokens=self.inflight_prompt_tokens,
            cached_prefix_tokens=cached,
            preemptions=self.stats.preemptions,
        )

    def cached_prompt_tokens(self, seq: Seq) -> int:
        """Tokens of ``seq``'s prompt in full blocks this instance's prefix cache holds (the
        longest cached chain). Call ``sync(now)`` first."""
        if not self._caching:
            return 0
        keys = seq.prefix_keys(self.bt)
        return self.kv.match(keys, seq.req.prompt_tokens // self.bt) * self.bt if keys else 0

    # ------------------------------------------------------------------ step end
    def _complete(self, now: float) -> None:
        if self.meter is not None:
            self.meter.on_complete(self, now)
        k = self._k
        if k >= self._horizon:
            self._horizon = min(2 * self._horizon, self.max_run_steps)
        if self._alloc < k:
            self._alloc_steps(k)
        self.dstep += k - self._applied
        self.stats.steps += k
        self.stats.busy_s += now - self._start
        self._k = 0
        dstep = self.dstep
        # Decoders that produced their last token.
        heap = self._finish_heap
        while heap and heap[0][0] <= dstep:
            _, _, epoch, seq = heapq.heappop(heap)
            if seq.epoch == epoch and seq.state == DECODE:
                self._leave_decode(seq)
                seq.computed = dstep + seq.base
                seq.generated = seq.out_tokens
                self._release(seq, self.blocks_for(seq.computed))
                self._done(seq, now)
        # Prefill chunks.
        for seq, chunk in self._plan:
            if seq.state != PREFILL:
                continue
            seq.computed += chunk
            t = seq.req.tenant
            self._svc_prompt[t] = self._svc_prompt.get(t, 0) + chunk
            if seq.computed >= seq.target:
                seq.generated += 1
                self._svc_out[t] = self._svc_out.get(t, 0) + 1
                if math.isnan(seq.rec.first_token_s):
                    seq.rec.first_token_s = now
                    if self.on_first_token is not None:
                        self.on_first_token(seq, now)
                del self.prefilling[id(seq)]
                if seq.generated >= seq.out_tokens:
                    self._release(seq, seq.blocks)
                    self._done(seq, now)
                elif self.role == "prefill":
                    self._detach(seq, now)  # its KV goes to a decode instance
                else:
                    self._enter_decode(seq)
        self._plan = []

    def _enter_decode(self, seq: Seq) -> None:
        seq.e_mark = self.e_dec
        seq.state = DECODE
        seq.base = b = seq.computed - self.dstep
        seq.entry = self.dstep
        t = seq.req.tenant
        self._dec_n[t] = self._dec_n.get(t, 0) + 1
        self._dec_entry[t] = self._dec_entry.get(t, 0) + self.dstep
        self.cnt[b % self.bt] += 1
        self.base_sum += b
        self.ndec += 1
        if seq.req.deterministic:
            self.ndet += 1
            self.det_base_sum += b
        finish_at = seq.req.prompt_tokens + seq.out_tokens - 1 - b
        self._order += 1
        heapq.heappush(self._finish_heap, (finish_at, self._order, seq.epoch, seq))
        if self._caching and seq.done < len(seq.prefix_keys(self.bt)):
            self._share[b % self.bt][id(seq)] = seq  # its output fills blocks others may hit
            self._nshare += 1

    def _leave_decode(self, seq: Seq) -> None:
        t = seq.req.tenant
        self._dec_n[t] -= 1
        self._dec_entry[t] -= seq.entry
        self._svc_out[t] = self._svc_out.get(t, 0) + self.dstep - seq.entry
        b = seq.base
        self.cnt[b % self.bt] -= 1
        self.base_sum -= b
        self.ndec -= 1
        if seq.req.deterministic:
            self.ndet -= 1
            self.det_base_sum -= b
        seq.epoch += 1
        seq.energy_j += self.e_dec - seq.e_mark
        if self._nshare and self._share[b % self.bt].pop(id(seq), None) is not None:
            self._nshare -= 1

    def _cache_decodes(self, d: int) -> None:
        """The decode step that takes ``d`` to ``d + 1`` starts: cache the blocks it fills.

        A decoder fills a block when its token count reaches a multiple of the block size; the
        block is cached when the step that computes its last token is scheduled, as vLLM's
        ``allocate_slots`` caches every block full after the step (``cache_blocks``)."""
        bt = self.bt
        share = self._share[(-d - 1) % bt]
        if not share:
            return
        kv = self.kv
        for seq in tuple(share.values()):
            keys = seq.keys
            assert keys is not None
            i = seq.done  # the block this step fills (one per decode step at most)
            k = keys[i]
            if kv.try_insert(k):  # else a copy is in use: this block stays private
                seq.held.append(k)
            seq.done = i + 1
            if i + 1 >= len(keys):
                del share[id(seq)]
                self._nshare -= 1

    def _alloc_steps(self, a: int) -> None:
        """Take the blocks of steps ``_alloc .. a - 1`` of the current run (and cache the blocks
        their decodes fill), one step after the other when caching needs the order."""
        lo, kv = self._alloc, self.kv
        n = self._run_blocks(a - 1) - self._run_blocks(lo - 1)
        if not self._nshare:
            kv.allocate(n)
        else:
            d0 = self.dstep - self._applied  # dstep when the run started
            if n <= kv.empty:  # no eviction: the order of takes and caching does not matter
                kv.allocate(n)
                for j in range(lo, a):
                    self._cache_decodes(d0 + j)
            else:
                for j in range(lo, a):
                    kv.allocate(self._run_blocks(j) - self._run_blocks(j - 1))
                    self._cache_decodes(d0 + j)
        self._alloc = a

    def _release(self, seq: Seq, blocks: int, own_full: int = 0) -> None:
        """Free ``seq``'s blocks: its cached ones stay cached (LRU), the rest become empty,
        except its first ``own_full`` full blocks past its shared keys, which are cached under
        its own keys (after a recompute preemption: only it can hit them)."""
        held = seq.held
        shared = len(seq.keys or ())
        if own_full > shared and self._caching:
            held = held + self.kv.insert_run(seq.own_keys(shared, own_full))
        self.kv.release(held, blocks - len(held))
        seq.held, seq.blocks, seq.done = [], 0, 0

    def _done(self, seq: Seq, now: float) -> None:
        seq.state = DONE
        seq.rec.finish_s = now
        seq.rec.generated_tokens = seq.generated
        seq.rec.energy_j = seq.energy_j
        self.running.pop(id(seq), None)
        if self.retention is not None and not math.isnan(now):
            self.retention.on_finish(seq, now)
        self.outstanding -= 1
        self.inflight_prompt_tokens -= seq.req.prompt_tokens
        if not math.isnan(now):
            self.stats.served_tokens += seq.req.prompt_tokens + seq.generated
        for hook in self._finish_hooks:
            hook(seq, now)
        if self.on_finish is not None:
            self.on_finish(seq, now)

    # ------------------------------------------------------------------ preemption
    def _preempt(self, seq: Seq) -> None:
        """Take ``seq`` out of the batch, freeing its blocks (recompute or swap)."""
        self.running.pop(id(seq))
        swap = False
        if seq.state == DECODE:
            seq.generated += self.dstep - seq.entry
            self._leave_decode(seq)
            seq.computed = self.dstep + seq.base
            # Once this step's blocks are taken, a decoder holds room for one more token.
            blocks = self.blocks_for(seq.computed + self._step_allocated)
            swap = self.cfg.preemption_mode == "swap"
        else:
            del self.prefilling[id(seq)]
            blocks = seq.blocks
        self._release(seq, blocks, 0 if swap else seq.computed // self.bt)
        seq.rec.preemptions += 1
        self.stats.preemptions += 1
        seq.state = WAITING
        if swap:
            seq.swapped = True
            self._switch_cost(blocks, seq, out=True)
        else:
            self.stats.recomputed_tokens += seq.computed
            seq.computed = 0
            seq.target = seq.req.prompt_tokens + seq.generated
        self.waiting.push_front(seq)

    def _switch_cost(self, blocks: int, seq: Seq | None = None, out: bool = False) -> None:
        """Account a swap of ``blocks`` blocks of ``seq`` to (``out``) or from host memory."""
        sw = self.switch
        if sw is None:
            dt = blocks * self.bt * self.kv_bytes_per_token / self.host_link_bytes_s
        else:
            if sw.reuse and seq is not None:  # host copies stay valid (FastSwitch)
                if out:
                    blocks -= min(seq.host_blocks, blocks)
                    seq.host_blocks += blocks
                else:  # the partly filled last block will change; the full ones will not
                    seq.host_blocks = seq.computed // self.bt
            dt = sw.cost_s(blocks)
        self.stats.swapped_blocks += blocks
        self.stats.switch_s += dt
        self._extra_s += dt

    def _step_time(
        self,
        pf: int,
        pairs: float,
        nd: int,
        ctx: int,
        plan: list[tuple[Seq, int]] | tuple[()] = (),
        j: int = 0,
    ) -> float:
        """Seconds of the step ``j`` steps from now over these totals; with a determinism mode,
        its deterministic part (the decoders counted in ``ndet``, their chunks in ``plan``) is
        served as the mode says (:mod:`fleetsched.engine.determinism`)."""
        d = self.determinism
        if d is None:
            return self.step_model.step_time(pf, pairs, nd, ctx)
        n = self.ndet
        det = DetBatch(
            n,
            self.det_base_sum + n * (self.dstep + 1 + j),
            tuple(
                (c, c * (s.computed + (c + 1) / 2)) for s, c in plan if s.req.deterministic and c
            ),
        )
        return d.step_time(pf, pairs, nd, ctx, det)

    def _with_switch(self, step_s: float, extra_s: float) -> float:
        """A step's time with ``extra_s`` of swapping: added (the step waits for it, as vLLM),
        or overlapped with the step's compute (FastSwitch)."""
        if self._overlap:
            return step_s if step_s > extra_s else extra_s
        return step_s + extra_s

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, now: float, allow_yield: bool = True) -> float | None:
        kv = self.kv
        if self.retention is not None:
            self.retention.expire(now)
        if self.ndec and not self.prefilling and not len(self.waiting):
            # Decode only, nothing waiting: the general path below reduces to this.
            need = self.cnt[-self.dstep % self.bt]
            if need <= kv.empty + kv.idle:
                self._extra_s = 0.0
                kv.allocate(need)
                self._step_allocated = True
                if self._nshare:
                    self._cache_decodes(self.dstep)
                return self._start_run(now, False, False, True)
        cfg, bt = self.cfg, self.bt
        self._extra_s = 0.0
        self._step_allocated = False
        budget = self.budget - self.ndec
        cap = cfg.long_prefill_token_threshold or self.budget
        dec_need = self.cnt[-self.dstep % bt]
        plan: list[tuple[Seq, int, int]] = []  # (seq, chunk, new blocks)
        need = dec_need
        deferred: list[Seq] = []
        if allow_yield and cfg.preemptible_prefill and len(self.waiting) and self.prefilling:
            # Running prefills less urgent than the waiting head let it prefill first.
            head = self.waiting.peek(now)
            for seq in self.prefilling.values():
                if seq.yield_to is None and self._more_urgent(head, seq):
                    seq.yield_to = head
        for seq in self.prefilling.values():
            if budget <= 0:
                break
            if seq.yield_to is not None:
                if seq.yield_to.state in (WAITING, PREFILL):
                    deferred.append(seq)  # resumes after the request it yielded to starts
                    continue
                seq.yield_to = None
            chunk = min(min(seq.target, seq.avail) - seq.computed, budget, cap)
            if chunk <= 0:
                continue  # a streamed prompt waiting for its next piece
            nb = self.blocks_for(seq.computed + chunk) - seq.blocks
            plan.append((seq, chunk, nb))
            need += nb
            budget -= chunk

        while need > kv.free and self._unpin_for(need, now):
            pass  # retained blocks are given up before anything is preempted
        preempted = need > kv.free
        if preempted:
            budget = self._allocate_preempting(plan, budget)
        else:
            kv.allocate(need)
        self._step_allocated = True
        if self._nshare:
            self._cache_decodes(self.dstep)
        for seq, chunk, nb in plan:
            self._grow(seq, chunk, nb)

        blocked_by_kv = False
        if not preempted:
            blocked_by_kv, budget = self._admit(now, budget, plan)
        for seq in deferred:
            # Stand aside while the urgent request prefills; if it cannot start (memory),
            # go on rather than leave the engine idle.
            if (
                budget <= 0
                or seq.state != PREFILL  # preempted above
                or seq.yield_to is None
                or seq.yield_to.state == PREFILL
            ):
                continue
            chunk = min(min(seq.target, seq.avail) - seq.computed, budget, cap)
            if chunk <= 0:
                continue
            nb = self.blocks_for(seq.computed + chunk) - seq.blocks
            if nb > kv.free:
                break
            kv.allocate(nb)
            self._grow(seq, chunk, nb)
            plan.append((seq, chunk, nb))
            budget -= chunk

        if not plan and not self.ndec:
            if deferred:
                # Nothing else can run: the deferred prefills stop yielding.
                for seq in deferred:
                    seq.yield_to = None
                return self._schedule(now, allow_yield=False)
            if not len(self.waiting) or self.running:
                self.busy = False
                return None
            # An empty engine always starts the head (policies may refuse it only while
            # others run), else it would idle with work forever. It starts the head alone:
            # the new head is untried, so the refusal above no longer blocks a run (a
            # swapped-in head decodes at once and the next step may admit the new head).
            blocked_by_kv, _ = self._admit(now, budget, plan, force=True)
            if not plan and not self.ndec:
                if len(self.waiting):  # else only aborted requests were waiting
                    self._reject(self.waiting.pop(now), now)
                return self._schedule(now)
        nd = self.ndec
        if not plan:
            return self._start_run(now, preempted, blocked_by_kv)
        # A mixed step (prefill chunks, maybe decodes): one step.
        pf_tokens = 0
        pairs = 0.0
        self._plan = []
        for seq, chunk, _ in plan:
            pf_tokens += chunk
            pairs += chunk * (seq.computed + (chunk + 1) / 2)
            self._plan.append((seq, chunk))
        ctx_sum = self.base_sum + nd * (self.dstep + 1)
        step_s = self._step_time(pf_tokens, pairs, nd, ctx_sum, self._plan)
        dt = self._with_switch(step_s, self._extra_s)
        self._mix = (nd, ctx_sum, self._extra_s)
        end = now + dt
        self._start = now
        self.stats.runs += 1
        self._ends = [end]
        self._k = self._alloc = 1
        self._applied = 0
        return end

    def _grow(self, seq: Seq, chunk: int, nb: int) -> None:
        """Blocks for ``chunk`` more prefill tokens were allocated: cache every block it fills
        that has a shared key (also past a block that turned out to be cached already)."""
        if self._caching:
            keys = seq.keys
            assert keys is not None  # derived at admission
            hi = min((seq.computed + chunk) // self.bt, len(keys))
            if hi > seq.done:
                seq.held.extend(self.kv.insert_run(keys[seq.done : hi]))
                seq.done = hi
        seq.blocks += nb
        seq.chunk = chunk

    def _allocate_preempting(self, plan: list[tuple[Seq, int, int]], budget: int) -> int:
        """The step's blocks do not all fit: take them request by request in running order,
        preempting the policy's victim each time one does not fit and retrying, as vLLM's
        scheduler retries ``allocate_slots`` after each preemption (so what a victim frees can
        be reused, or its cached blocks evicted, before the next victim is chosen). Returns
        the token budget given back by preempted prefills added to ``budget``."""
        kv, bt, d = self.kv, self.bt, self.dstep
        new_blocks = {id(s): nb for s, _, nb in plan}
        taken: set[int] = set()
        running = self.running
        for seq in list(running.values()):
            if id(seq) not in running:
                continue  # preempted meanwhile
            if seq.state == DECODE:
                n = 1 if (seq.base + d) % bt == 0 else 0
            else:
                n = new_blocks.get(id(seq), 0)
            while n > kv.free:
                victim = self.preemption.victim(list(running.values()))
                vid = id(victim)
                # A victim whose blocks of this step are taken gives them back too.
                self._step_allocated = vid in taken
                if victim.state != DECODE:
                    if vid in taken:
                        kv.release([], new_blocks[vid])
                    for i, (s, chunk, _) in enumerate(plan):
                        if s is victim:
                            budget += chunk
                            del plan[i]
                            break
                self._preempt(victim)
                if victim is seq:
                    break
            else:
                if n:
                    kv.allocate(n)
                    taken.add(id(seq))
        return budget

    def _admit(
        self, now: float, budget: int, plan: list[tuple[Seq, int, int]], force: bool = False
    ) -> tuple[bool, int]:
        """Start waiting requests while budget, seats and blocks last. Returns whether the
        head was refused by the admission policy (memory), and the budget left."""
        cfg, kv, bt = self.cfg, self.kv, self.bt
        cap = cfg.long_prefill_token_threshold or self.budget
        waiting = self.waiting
        self._room_victims: set[int] = set()
        while budget > 0 and len(waiting):
            seq = waiting.peek(now)
            if seq.state == DONE:  # aborted while waiting: leaves the queue now
                waiting.pop(now)
                self._aborted_waiting -= 1
                continue
            if id(seq) in self._room_victims and not force:
                # Preempted to make room in this very step: it waits for the next one (else
                # an order that ranks it first would admit and preempt it forever).
                return False, budget
            if len(self.running) >= self.max_num_seqs:
                freed = self._make_room(seq, plan)
                if freed < 0:
                    return False, budget
                budget += freed
                continue
            if seq.swapped:
                # Its KV comes back (host memory, or another instance): it decodes in this
                # very step, as vLLM schedules a request the step its remote KV is ready.
                nb = self.blocks_for(seq.computed + 1)
                if self._unpin_for(nb, now):
                    continue
                if force:
                    if nb > kv.free:
                        return True, budget
                elif not self.admission.admit(seq, nb, self):
                    freed = self._make_room(seq, plan)
                    if freed < 0:
                        return True, budget
                    budget += freed
                    continue
                waiting.pop(now)
                kv.allocate(nb)
                seq.blocks = nb
                seq.swapped = False
                if seq.transferred:
                    seq.transferred = False
                else:
                    self._switch_cost(self.blocks_for(seq.computed), seq)
                if self._caching:
                    # Its blocks are cached like computed ones (vLLM caches received KV).
                    keys = seq.prefix_keys(bt)
                    hi = min((seq.computed + 1) // bt, len(keys))
                    seq.held = kv.insert_run(keys[:hi])
                    seq.done = hi
                self._run(seq)
                self._enter_decode(seq)
                budget -= 1
                if force:
                    return False, budget  # force starts the head alone
                continue
            hits = own = touch_cost = 0
            if self._caching:
                hits, own = self._prefix_hit(seq)
                if hits:
                    rcs = map(kv.rc.__getitem__, seq.prefix_keys(bt)[:hits])
                    touch_cost = len(list(filter(_IDLE, rcs)))
                touch_cost += own  # own cached blocks are idle: nobody else holds them
            cached = (hits + own) * bt
            remaining = min(seq.target, seq.avail) - cached
            if remaining <= 0:
                return False, budget  # what has arrived of its prompt is all cached: wait
            chunk = min(remaining, budget, cap)
            if chunk < remaining and not cfg.enable_chunked_prefill:
                return False, budget
            nb = self.blocks_for(cached + chunk) - hits - own
            if self._unpin_for(nb + touch_cost, now):
                continue  # retained blocks were unpinned: look again
            if force:
                if nb + touch_cost > kv.free:
                    return True, budget
            elif not self.admission.admit(seq, nb + touch_cost, self):
                freed = self._make_room(seq, plan)
                if freed < 0:
                    return True, budget
                budget += freed
                continue
            waiting.pop(now)
            if hits:
                held = seq.prefix_keys(bt)[:hits]
                kv.touch(held)
                seq.held = held
                if self.retention is not None:
                    self.retention.on_admit(seq, now)
            if own:
                kv.take(seq.own_keys(hits, hits + own))
            seq.done = hits
            seq.computed = cached
            seq.blocks = hits + own
            if not seq.admitted_once:
                seq.admitted_once = True
                seq.rec.first_scheduled_s = now
                seq.rec.cached_prompt_tokens = cached
                self.stats.prompt_tokens += seq.req.prompt_tokens
                self.stats.cached_tokens += cached
            kv.allocate(nb)
            self._grow(seq, chunk, nb)
            self._run(seq)
            seq.state = PREFILL
            self.prefilling[id(seq)] = seq
            plan.append((seq, chunk, nb))
            budget -= chunk
            if force:
                return False, budget  # force starts the head alone
        return False, budget

    def _prefix_hit(self, seq: Seq) -> tuple[int, int]:
        """Leading blocks of ``seq`` the prefix cache holds, at most all but its last token:
        (blocks with shared keys, then blocks with its own keys, which only a request that a
        recompute preemption freed can still have cached)."""
        bt = self.bt
        keys = seq.prefix_keys(bt)
        limit = min(seq.target - 1, seq.avail) // bt  # a streamed prompt: what has arrived
        hits = self.kv.match(keys, limit) if keys else 0
        own = 0
        if seq.rec.preemptions and hits == len(keys) and hits < limit:
            own = self.kv.match(seq.own_keys(hits, limit), limit - hits)
        return hits, own

    def _unpin_for(self, blocks: int, now: float) -> bool:
        """Unpin retained blocks so ``blocks`` are free, if KV is short and anything is pinned;
        True when something was unpinned."""
        r = self.retention
        return r is not None and blocks > self.kv.free and r.release(blocks - self.kv.free, now) > 0

    def _make_room(self, head: Seq, plan: list[tuple[Seq, int, int]]) -> int:
        """Preempt a running request so ``head`` can start, if the preemption policy names one
        (e.g. a lower-priority request). Returns the token budget given back, or -1."""
        if self._victim_for_admission is None:
            return -1
        victim = self._victim_for_admission(head, list(self.running.values()))
        if victim is None:
            return -1
        self._room_victims.add(id(victim))
        freed = 0
        for i, (s, chunk, _) in enumerate(plan):
            if s is victim:
                freed = chunk
                del plan[i]
                break
        self._preempt(victim)
        return freed

    # ------------------------------------------------------------------ service accounting
    def blocks_held(self, seq: Seq) -> int:
        """KV blocks ``seq`` holds now (including the step in progress)."""
        if seq.state == DECODE:
            tokens = seq.base + self.dstep
            if self._k:
                tokens += self._alloc - self._applied
            elif self._step_allocated:
                tokens += 1
            return self.blocks_for(tokens)
        return seq.blocks

    def computed_tokens(self, seq: Seq) -> int:
        """Tokens of ``seq`` whose KV is computed (as of the last applied step)."""
        return seq.base + self.dstep if seq.state == DECODE else seq.computed

    def decode_steps(self, seq: Seq) -> int:
        """Decode steps ``seq`` has taken since it last started decoding (0 if not decoding)."""
        return self.dstep - seq.entry if seq.state == DECODE else 0

    def generated_tokens(self, seq: Seq) -> int:
        """Output tokens ``seq`` has produced so far."""
        if seq.state == DECODE:
            return seq.generated + self.dstep - seq.entry
        return seq.generated

    def tenant_service(self, tenant: str) -> tuple[int, int]:
        """(prompt tokens computed, output tokens generated) for ``tenant`` so far."""
        out = self._svc_out.get(tenant, 0)
        n = self._dec_n.get(tenant, 0)
        if n:
            out += n * self.dstep - self._dec_entry[tenant]
        return self._svc_prompt.get(tenant, 0), out

    def _run(self, seq: Seq) -> None:
        self.running[id(seq)] = seq

    def _start_run(
        self, now: float, preempted: bool, blocked_by_kv: bool, decode_only: bool = False
    ) -> float:
        """Plan k >= 1 decode-only steps from ``now`` (their first step's blocks are taken).

        k is bounded by the next finish, by free KV blocks and by an adaptive horizon (doubled
        after a run that ran to its end, reset when a run is cut): how a run is split never
        changes results, only how many events it takes. ``decode_only``: nothing waits or
        prefills and nothing was preempted (``_schedule``'s fast path).
        """
        nd, dstep, bt = self.ndec, self.dstep, self.bt
        k = 1
        if decode_only:
            waiting, seats_full = 0, False
            can_run = self.max_run_steps > 1
        else:
            waiting = len(self.waiting)
            # Seats full: only a different head could change that (by preempting).
            seats_full = len(self.running) >= self.max_num_seqs and (
                self.waiting.time_invariant or self._victim_for_admission is None
            )
            can_run = (
                self.max_run_steps > 1
                and not preempted
                and not self.prefilling  # a prefill left out of this step may get a chunk next
                and (
                    not waiting
                    or seats_full
                    or (blocked_by_kv and self.waiting.time_invariant and self.admission.monotone)
                )
            )
        # New blocks of steps 1..j of the run repeat with period bt: cum(j) = (j // bt) * S +
        # P[j % bt], with P the prefix sums of the rotated histogram over one period.
        if can_run:
            heap = self._finish_heap
            while heap[0][2] != heap[0][3].epoch or heap[0][3].state != DECODE:
                heapq.heappop(heap)
            kmax = min(self._horizon, heap[0][0] - dstep)
            if waiting and not seats_full and self._nshare:
                # A block a decoder caches can let the head in (a longer prefix hit, or an
                # idle block it hits taken into use): stop before the first step caching one.
                share = self._share
                for j in range(1, min(kmax, bt + 1)):
                    if share[(-dstep - j - 1) % bt]:
                        kmax = j
                        break
            if kmax > 1:
                # cnt at (-dstep - i) % bt for i = 1..bt: cnt[r], cnt[r - 1], ... cyclically.
                cnt, r = self.cnt, (-dstep - 1) % bt
                p = list(accumulate(cnt[r::-1] + cnt[:r:-1], initial=0))
                total = p[-1]
                self._period = p
                kv = self.kv
                free = kv.empty + kv.idle
                if total == 0:
                    j = kmax - 1
                else:
                    q, rem = divmod(free, total)
                    t = bisect_right(p, rem, 0, bt) - 1  # P[t] <= rem, t < bt
                    j = min(q * bt + t, kmax - 1)
                k = j + 1
                if waiting and not seats_full and j and total:
                    k = min(k, self._steps_before_head_eviction(now, p, total, self._run_blocks(j)))
        base = self.base_sum + nd * (dstep + 1)
        det = self.determinism
        line = None
        lines = self._lines
        if lines is not None and det is None:
            line = lines.get(nd)
            if line is None:
                line = lines[nd] = self._decode_line(nd)  # type: ignore[misc]
        if line is not None:
            # step j takes a + (base + nd * j) * b: bitwise what step_time returns (int
            # context times a float, then the sum), and the end times are the same running
            # sum as the step-by-step path's, so results do not depend on this path.
            a, b = line
            dts = map(a.__add__, map(b.__mul__, range(base, base + nd * k, nd)))
            first = now + self._with_switch(next(dts), self._extra_s)
            ends = list(accumulate(dts, initial=first))
        elif k <= 8:
            if det is None:
                model = self.step_model
                steps = [model.step_time(0, 0.0, nd, base + nd * j) for j in range(k)]
            else:
                steps = [self._step_time(0, 0.0, nd, base + nd * j, j=j) for j in range(k)]
            t = now + self._with_switch(steps[0], self._extra_s)
            ends = [t]
            for step in steps[1:]:
                t = t + step
                ends.append(t)
        else:
            ctx = base + nd * np.arange(k, dtype=np.int64)
            if det is None:
                dts = self.step_model.decode_step_times(nd, ctx)
            else:
                nt = self.ndet
                det_ctx = self.det_base_sum + nt * (dstep + 1) + nt * np.arange(k, dtype=np.int64)
                dts = det.decode_step_times(nd, ctx, nt, det_ctx)
            dts[0] = self._with_switch(dts[0], self._extra_s)
            ends = np.cumsum(np.concatenate(([now], dts)))[1:].tolist()
        self._line = line
        if self.retention is not None and k > 1:
            # A pin that expires mid-run frees its blocks then: end the run at that step.
            exp = self.retention.next_expiry()
            if exp < ends[-1]:
                k = bisect_left(ends, exp) + 1
                ends = ends[:k]
        self._start = now
        self.stats.runs += 1
        self._ends = ends
        self._k = k
        self._alloc = 1
        self._applied = 0
        self._plan = []
        return ends[-1]

    def _steps_before_head_eviction(self, now: float, p: list[int], total: int, taken: int) -> int:
        """Steps a run may take before one whose blocks evict a cached block the blocked
        waiting head would hit: its need then changes, and not always upwards (fewer hits can
        mean a smaller chunk to place). ``p``/``total`` give the run's new blocks per step (see
        _start_run), ``taken`` the blocks its later steps take in all. Returns a large number
        when no such eviction can come."""
        never = 1 << 30
        kv, bt = self.kv, self.bt
        evictions = taken - kv.empty  # the run takes empty blocks first, then the LRU front
        head = self.waiting.peek(now)
        if evictions <= 0 or head.swapped or not self._caching:
            return never
        hits, own = self._prefix_hit(head)
        chain = head.prefix_keys(bt)[:hits] + head.own_keys(hits, hits + own)
        rc = kv.rc
        idle = {k for k in chain if rc[k] < 1}
        if not idle:
            return never
        for q, key in enumerate(islice(kv.lru_order(), evictions)):
            if key in idle:
                # Steps 1..j take kv.empty + q + 1 blocks when that block goes: find j.
                target = kv.empty + q + 1
                a = (target - 1) // total
                return a * bt + bisect_left(p, target - a * total, 0, bt + 1)
        return never

    # ------------------------------------------------------------------ checks
    def check_invariants(self) -> None:
        """Assert KV accounting agrees with every request's holdings (for tests)."""
        referenced: dict[int, int] = {}
        private = 0
        bt = self.bt
        sharing = 0
        for seq in self.running.values():
            if seq.state == DECODE:
                # Blocks of every step started so far are allocated (a step takes its
                # blocks when it starts).
                tokens = seq.base + self.dstep
                if self._k:
                    tokens += self._alloc - self._applied
                elif self._step_allocated:
                    tokens += 1
                blocks = self.blocks_for(tokens)
            else:
                blocks = seq.blocks
                tokens = seq.computed + (seq.chunk if self._k and seq.state == PREFILL else 0)
            for k in seq.held:
                referenced[k] = referenced.get(k, 0) + 1
            private += blocks - len(seq.held)
            assert seq.state == DECODE or seq.computed <= seq.avail, "prefilled past the prompt"
            if self._caching:
                # Every full block with a shared key is cached or a duplicate of one in use
                # (held is in block order, a subsequence of the settled keys), and only the
                # ones filled so far.
                keys = seq.prefix_keys(bt)
                assert seq.done <= len(keys) and seq.done <= self.blocks_for(tokens)
                if seq.state == DECODE:
                    assert seq.done == min(len(keys), tokens // bt), "a filled block not cached"
                    in_share = id(seq) in self._share[seq.base % bt]
                    assert in_share == (seq.done < len(keys))
                    sharing += in_share
                it = iter(keys[: seq.done])
                assert all(k in it for k in seq.held), "held is not a subsequence of the keys"
            else:
                assert not seq.held
        assert sharing == self._nshare
        if self.retention is not None:
            for k in self.retention.held():
                referenced[k] = referenced.get(k, 0) + 1
        self.kv.check(referenced, private)
        assert self.ndec == sum(1 for s in self.running.values() if s.state == DECODE)
        dets = [s for s in self.running.values() if s.state == DECODE and s.req.deterministic]
        assert self.ndet == len(dets) and self.det_base_sum == sum(s.base for s in dets)
