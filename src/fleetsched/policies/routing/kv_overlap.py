"""KV-overlap cost routing as NVIDIA Dynamo's KV router runs it.

Follows ai-dynamo/dynamo ``lib/kv-router`` (``scheduling/selector/default.rs``
``DefaultWorkerScorer::worker_logit`` and ``pick_default_worker``, ``scheduling/config.rs``
``KvRouterConfig::default``, ``sequences/single.rs`` ``ActiveSequences``,
``sequences/prefill_tracker.rs``; the 2026 main branch as stored, commit 07a6c9ce for the
selector, 0243c51b for the config). Each worker gets a cost in blocks, the lowest wins::

    prefill  = max(0, (active_prefill_tokens + prompt_tokens) / block_tokens
                      - overlap_score_credit * decay * overlap_blocks)
    decode   = active_blocks + new_blocks
    cost     = prefill_load_scale * prefill + decode
               + decode_active_request_weight * active_requests

* ``overlap_blocks``: full blocks of the prompt in the worker's prefix cache -- what Dynamo's
  indexer learns from the engines' KV events; here ``InstanceView.cached_prefix_tokens``
  (a gateway fills it from KV events or its own prefix index).
* ``active_prefill_tokens``: router-side, the prefill charged to requests routed to the worker
  whose first token has not come back; a request is charged ``prompt_tokens -
  overlap_blocks * block_tokens`` (Dynamo's ``initial_effective_prefill_tokens``) at
  dispatch and released by ``on_first_token`` (Dynamo's ``mark_prefill_completed``) or
  ``on_finish``. With no prefill-duration model (Dynamo's default, no AIC) the charge does
  not decay with time.
* ``active_blocks``: router-side, the prompt blocks of every sequence routed to the worker
  until it finishes, blocks shared between them counted once (``router_track_active_blocks``
  and ``router_assume_kv_reuse``, both on by default); ``new_blocks``: the request's blocks
  not already among them. Output blocks are not tracked (``router_track_output_blocks`` is
  off by default). Blocks are deduplicated in ``active_unit_tokens`` (64) token units (see
  :mod:`.ledger`; 16 is Dynamo's exact rule at four times the bookkeeping).
* ``decay = 1 / (1 + overlap_score_credit_decay * excess_prefill_blocks / request_blocks)``
  where ``excess`` is the worker's active prefill above the least loaded candidate's; the
  default decay 0 makes it 1.

Defaults are Dynamo's: ``overlap_score_credit=1``, ``prefill_load_scale=1``,
``overlap_score_credit_decay=0``, ``decode_active_request_weight=0``, ``temperature=0``.
Temperature 0 takes the minimum cost, ties at random (Dynamo samples among equal costs);
a positive temperature samples from ``softmax(-(cost - min) / (max - min) / temperature)``.
``overlap_weight`` is Dynamo's deprecated ``overlap_score_weight``: it sets
``prefill_load_scale`` (and zero turns the overlap credit off too).

Deliberate differences: only healthy workers are candidates (Dynamo's eligibility filters,
busy thresholds and router-side queue, ``router_queue_threshold``, are not modelled: queueing
is left to the engines); host/disk cache tiers and the shared-cache term are absent (no such
tiers here); active blocks are deduplicated in 64-token units and the rest of a prompt past
its last full unit counts per request, where Dynamo hashes every full 16-token block (a
quarter of the bookkeeping per request; at most 48 tokens per prompt differ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, healthy, index_mask, pick_min
from fleetsched.policies.routing.ledger import Ledger


class KVOverlap:
    needs_views = True
    needs_prefix = True

    def __init__(
        self,
        seed: int = 0,
        overlap_score_credit: float = 1.0,
        prefill_load_scale: float = 1.0,
        temperature: float = 0.0,
        overlap_score_credit_decay: float = 0.0,
        decode_active_request_weight: float = 0.0,
        block_tokens: int = BLOCK_TOKENS,
        overlap_weight: float | None = None,
        active_unit_tokens: int = 64,
    ) -> None:
        if overlap_weight is not None:  # Dynamo's deprecated overlap_score_weight
            prefill_load_scale = overlap_weight
            if overlap_weight == 0:
                overlap_score_credit = 0.0
        if not 0.0 <= overlap_score_credit <= 1.0:
            raise InputError(
                f"kv_overlap: overlap_score_credit must be in [0, 1], got {overlap_score_credit}"
                " (to weigh prefill load more, raise prefill_load_scale)"
            )
        if (
            temperature < 0
            or prefill_load_scale < 0
            or overlap_score_credit_decay < 0
            or decode_active_request_weight < 0
            or block_tokens < 1
            or active_unit_tokens < 1
        ):
            raise InputError(
                "kv_overlap: temperature, prefill_load_scale, overlap_score_credit_decay and "
                "decode_active_request_weight must be >= 0, block_tokens and "
                "active_unit_tokens >= 1"
            )
        self.overlap_score_credit = overlap_score_credit
        self.prefill_load_scale = prefill_load_scale
        self.temperature = temperature
        self.overlap_score_credit_decay = overlap_score_credit_decay
        self.decode_active_request_weight = decode_active_request_weight
        self.block_tokens = block_tokens
        self.ledger = Ledger(track_blocks=True, unit_tokens=active_unit_tokens)
        self._base: list[float] = []  # per instance: the request-independent part of the cost
        self._rng = UniformStream(seed)

    def _overlap(self, req: RequestView, v: InstanceView) -> int:
        bt = self.block_tokens
        return min(v.cached_prefix_tokens // bt, -(-req.prompt_tokens // bt))

    def _refresh(self, i: int) -> None:
        """Recompute instance ``i``'s request-independent cost after its ledger changed:
        ``prefill_load_scale * active_prefill / block_tokens + active_blocks
        + decode_active_request_weight * active_requests``."""
        led, base = self.ledger, self._base
        if i >= len(base):
            base.extend([0.0] * (i + 1 - len(base)))
        base[i] = (
            self.prefill_load_scale * led.prefill_tokens[i] + led.active_tokens[i]
        ) / self.block_tokens + self.decode_active_request_weight * led.requests[i]

    def costs(self, req: RequestView, views: Sequence[InstanceView]) -> list[float]:
        """Dynamo's cost of sending ``req`` to each of ``views``."""
        bt = self.block_tokens
        p = req.prompt_tokens
        led = self.ledger
        idx = [v.index for v in views]
        top = max(idx) + 1
        if top > len(led.requests):
            led.grow(top)
        if top > len(self._base):
            self._base.extend([0.0] * (top - len(self._base)))
        hs, unit = led.path(req)
        shared = led.active_prefix(hs, index_mask(idx))
        pf = led.prefill_tokens
        # Tokens the request would add to an instance's active set before what is active there
        # already (the un-hashed tail always counts).
        new_all = max(p, len(hs) * unit)
        rb = -(-p // bt)
        credit, scale, inv = self.overlap_score_credit, self.prefill_load_scale, 1.0 / bt
        if self.overlap_score_credit_decay > 0:
            k, floor = self.overlap_score_credit_decay, min(pf[i] for i in idx)
            act, nreq, w = led.active_tokens, led.requests, self.decode_active_request_weight
            get = shared.get
            out = []
            for v, i in zip(views, idx, strict=True):
                c = credit / (1.0 + k * (pf[i] - floor) * inv / max(rb, 1))
                ov = min(v.cached_prefix_tokens // bt, rb)
                prefill = max((pf[i] + p) * inv - c * ov, 0.0)
                decode = (act[i] + new_all - get(i, 0) * unit) * inv
                out.append(scale * prefill + decode + w * nreq[i])
            return out
        # The request-independent part is kept per instance (_refresh); here: the request's
        # own prompt and blocks, less the cache credit (sparse) and its blocks already active.
        base = self._base
        c0 = (scale * p + new_all) * inv
        out = [c0 + base[i] for i in idx]
        if credit > 0:
            hits = [j for j, v in enumerate(views) if v.cached_prefix_tokens >= bt]
            for j in hits:
                ov = views[j].cached_prefix_tokens // bt
                pre = (pf[idx[j]] + p) * inv
                cut = credit * (ov if ov < rb else rb)
                out[j] -= scale * (cut if cut < pre else pre)
        for i, n in shared.items():
            j = i if i < len(idx) and idx[i] == i else idx.index(i)
            out[j] -= n * unit * inv
        return out

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        if len(cands) == 1:
            best = cands[0]
        else:
            costs = self.costs(req, cands)
            best = self._pick(cands, costs)
        charge = req.prompt_tokens - self._overlap(req, best) * self.block_tokens
        self.ledger.dispatch(req, best.index, charge)
        self._refresh(best.index)
        return best.index

    def _pick(self, cands: Sequence[InstanceView], costs: list[float]) -> InstanceView:
        if self.temperature <= 0.0:
            return pick_min(cands, costs, self._rng)
        lo, hi = min(costs), max(costs)
        if hi == lo:
            return cands[self._rng.index(len(cands))]
        span, t = hi - lo, self.temperature
        weights = [math.exp(-(c - lo) / span / t) for c in costs]
        u = self._rng.random() * sum(weights)
        acc = 0.0
        for v, wt in zip(cands, weights, strict=True):
            acc += wt
            if u < acc:
                return v
        return cands[-1]

    def on_first_token(self, req: RequestView, index: int) -> None:
        i = self.ledger.index_of(req)
        self.ledger.first_token(req)
        if i is not None:
            self._refresh(i)

    def on_finish(self, req: RequestView, index: int) -> None:
        i = self.ledger.index_of(req)
        self.ledger.finish(req)
        if i is not None:
            self._refresh(i)
