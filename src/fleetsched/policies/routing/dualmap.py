"""DualMap: two hash candidates per prompt prefix, the better one wins (ICLR 2026).

"DualMap: Enabling Both Cache Affinity and Load Balancing for Distributed LLM Serving"
(arXiv 2602.06502, ICLR 2026). Each request's prefix key is mapped to two candidate
instances by two independent hash functions (two consistent-hash rings, so scaling moves few
keys: the paper's dual-hash-ring scaling), and the better candidate under the current state
is chosen: requests sharing a prefix land on one of the same two instances (cache affinity),
distinct prefixes spread by "the power of two choices" (load balance). Here:

* **Better candidate** = lower predicted TTFT (ties: fewer outstanding, then at random), with
  a linear model over queue, batch and uncached prompt tokens::

      ttft_s = ttft_base_s + ttft_per_queued_s * queue_len + ttft_per_running_s * running
               + ttft_per_token_s * (prompt_tokens - cached_prefix_tokens)

* **SLO-aware routing**: if the chosen candidate's predicted TTFT exceeds ``ttft_slo_s``,
  switch to load-first: the least loaded healthy instance overall (fewest outstanding; ties:
  lower predicted TTFT, then at random).
* **Hotspot-aware rebalancing**: if a candidate's outstanding count exceeds
  ``hot_factor * max(mean, 1)`` (mean over healthy instances), that prefix key's mapping on
  that ring is remapped to the coolest instance, kept in a small override table (at most
  ``max_overrides`` keys, oldest dropped first). The paper migrates queued requests too;
  moving requests is the simulator's business, the router only remaps future ones.

The key (:mod:`.prefix_key`) uses the paper's adaptive prefix length by default: the router
learns where prompts branch and keys on the prefix up to the first block after the last
branching point, so a system prompt shared by every request (Mooncake's first block) does
not give every request the same two candidates, while all turns of one conversation keep
theirs. ``key_tokens=N`` keys on the first N tokens instead (stateless). The paper does not
publish the exact rule for choosing the length; this branching rule is our reading of it.
Ties at every step break at random from the router's seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, pick_min
from fleetsched.policies.routing.consistent_hash import RingCache
from fleetsched.policies.routing.prefix_key import PrefixKey


class DualMap:
    needs_views = True
    needs_prefix = True

    def __init__(
        self,
        seed: int = 0,
        key_tokens: int | None = None,
        vnodes: int = 160,
        ttft_slo_s: float = 1.0,
        ttft_base_s: float = 0.01,
        ttft_per_queued_s: float = 0.05,
        ttft_per_running_s: float = 0.002,
        ttft_per_token_s: float = 5e-5,
        hot_factor: float = 2.0,
        max_overrides: int = 4096,
    ) -> None:
        if vnodes < 1 or hot_factor <= 0 or max_overrides < 0:
            raise InputError("dualmap: vnodes must be >= 1, hot_factor > 0, max_overrides >= 0")
        self.prefix_key = PrefixKey(key_tokens)
        self._rng = UniformStream(seed)
        self.ttft_slo_s = ttft_slo_s
        self.coef = (ttft_base_s, ttft_per_queued_s, ttft_per_running_s, ttft_per_token_s)
        self.hot_factor = hot_factor
        self.max_overrides = max_overrides
        self._rings = (RingCache(vnodes, f"dm{seed}a"), RingCache(vnodes, f"dm{seed}b"))
        #: (key, ring 0/1) -> instance name (or "#index")
        self._override: dict[tuple[int, int], str] = {}
        #: Last decision: its two candidates and whether the SLO switch fired.
        self.last_candidates: tuple[int, int] = (-1, -1)
        self.last_switched = False

    def predict_ttft_s(self, req: RequestView, v: InstanceView) -> float:
        b, q, r, t = self.coef
        uncached = max(req.prompt_tokens - v.cached_prefix_tokens, 0)
        return b + q * v.queue_len + r * v.running + t * uncached

    def candidates(
        self, req: RequestView, instances: Sequence[InstanceView], key: int | None = None
    ) -> tuple[InstanceView, InstanceView]:
        """The two candidates (the same one twice only when a single instance is healthy);
        ``key`` is the request's prefix key (computed when None)."""
        if key is None:
            key = self.prefix_key(req)
        picked: list[int] = []  # positions in ``instances``
        for slot, cache in enumerate(self._rings):
            ring = cache.get(instances)
            name = self._override.get((key, slot))
            if name is not None:
                pos = cache.position(name)
                if pos is not None and instances[pos].healthy and pos not in picked:
                    picked.append(pos)
                    continue
                del self._override[(key, slot)]
            for pos in ring.walk(key):
                if instances[pos].healthy and pos not in picked:
                    picked.append(pos)
                    break
            else:
                picked.append(picked[0] if picked else ring.first(key))
        return instances[picked[0]], instances[picked[1]]

    def _better(self, req: RequestView, a: InstanceView, b: InstanceView) -> InstanceView:
        ka = (self.predict_ttft_s(req, a), a.queue_len + a.running)
        kb = (self.predict_ttft_s(req, b), b.queue_len + b.running)
        if ka == kb and a is not b:
            return a if self._rng.random() < 0.5 else b
        return a if ka <= kb else b

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        up = [v for v in instances if v.healthy] or list(instances)
        key = self.prefix_key(req)
        a, b = self.candidates(req, instances, key)
        # Hotspot-aware rebalancing: remap a hot candidate's key to the coolest instance.
        if len(up) > 2:
            loads = [v.queue_len + v.running for v in up]
            bound = self.hot_factor * max(sum(loads) / len(up), 1.0)
            pair = [a, b]
            for slot in (0, 1):
                c = pair[slot]
                if c.queue_len + c.running > bound:
                    other = pair[1 - slot]
                    rest = [v for v in up if v is not other]
                    cool = pick_min(rest, [v.queue_len + v.running for v in rest], self._rng)
                    if cool.queue_len + cool.running < c.queue_len + c.running:
                        self._remap(key, instances, slot, cool)
                        pair[slot] = cool
            a, b = pair
        self.last_candidates = (a.index, b.index)
        best = self._better(req, a, b)
        self.last_switched = False
        if self.predict_ttft_s(req, best) > self.ttft_slo_s:
            self.last_switched = True
            keys = [(v.queue_len + v.running, self.predict_ttft_s(req, v)) for v in up]
            best = pick_min(up, keys, self._rng)
        return best.index

    def _remap(
        self, prefix: int, instances: Sequence[InstanceView], slot: int, to: InstanceView
    ) -> None:
        if self.max_overrides == 0:
            return
        cache = self._rings[slot]
        cache.get(instances)
        pos = next(i for i, v in enumerate(instances) if v is to)
        key = (prefix, slot)
        self._override.pop(key, None)
        self._override[key] = cache.ids[pos]
        while len(self._override) > self.max_overrides:
            del self._override[next(iter(self._override))]

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
