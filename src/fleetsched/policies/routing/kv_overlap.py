"""KV-overlap cost routing as in NVIDIA Dynamo's KV router.

Dynamo's KV router (``--router-mode kv``; ``DefaultWorkerSelector``) learns each worker's
cached blocks from the engines' KV events and scores every worker with a cost (lower wins)::

    cost = overlap_weight * potential_prefill_blocks + potential_active_blocks
    potential_prefill_blocks = (prompt_tokens - cached_blocks * block_tokens) / block_tokens
    potential_active_blocks  = active_blocks + new_blocks
    new_blocks               = ceil(prompt_tokens / block_tokens) - cached_blocks

Here ``cached_blocks`` comes from ``InstanceView.cached_prefix_tokens`` (the engine's exact
prefix-cache hit, as KV events give it) and ``active_blocks`` is the instance's used KV
blocks, ``kv_utilization * total_blocks``. Defaults are Dynamo's
(``--kv-overlap-score-weight 1``, ``--router-temperature 0``): temperature 0 takes the
argmin (ties: lowest index); a positive temperature samples from
``softmax(-normalised_cost / temperature)``, costs min-max normalised to [0, 1] first as
Dynamo does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, healthy


def _index(v: InstanceView) -> int:
    return v.index


class KVOverlap:
    needs_views = True
    needs_prefix = True

    def __init__(
        self,
        seed: int = 0,
        overlap_weight: float = 1.0,
        temperature: float = 0.0,
        block_tokens: int = BLOCK_TOKENS,
    ) -> None:
        if temperature < 0 or block_tokens < 1:
            raise InputError("kv_overlap: temperature must be >= 0 and block_tokens >= 1")
        self.overlap_weight = overlap_weight
        self.temperature = temperature
        self.block_tokens = block_tokens
        self._rng = UniformStream(seed)

    def costs(self, req: RequestView, views: Sequence[InstanceView]) -> list[float]:
        bt = self.block_tokens
        p = req.prompt_tokens
        rb = -(-p // bt)  # request blocks
        wbt = self.overlap_weight / bt
        out = []
        append = out.append
        for v in views:
            c = v.cached_prefix_tokens // bt
            if c > rb:
                c = rb
            pre = p - c * bt
            if pre < 0:
                pre = 0
            append(wbt * pre + v.kv_utilization * v.total_blocks + (rb - c))
        return out

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        if len(cands) == 1:
            return cands[0].index
        costs = self.costs(req, cands)
        if self.temperature <= 0.0:
            lo = min(costs)
            best = cands[costs.index(lo)]
            if costs.count(lo) > 1:  # lowest index among the ties
                best = min((v for v, c in zip(cands, costs, strict=True) if c == lo), key=_index)
            return best.index
        lo, hi = min(costs), max(costs)
        if hi == lo:
            return cands[self._rng.index(len(cands))].index
        span, t = hi - lo, self.temperature
        weights = [math.exp(-(c - lo) / span / t) for c in costs]
        u = self._rng.random() * sum(weights)
        acc = 0.0
        for v, wt in zip(cands, weights, strict=True):
            acc += wt
            if u < acc:
                return v.index
        return cands[-1].index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
