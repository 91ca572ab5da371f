"""Cache-aware routing as the SGLang model gateway runs it (``cache_aware`` policy).

Follows the gateway's current code, which moved from sgl-project/sglang
(``sgl-model-gateway/``) to lightseekorg/smg: ``model_gateway/src/policies/cache_aware.rs``
and ``crates/kv_index`` at smg commit 73da68ca (Aug 2026), CLI defaults from
``model_gateway/src/main.rs`` and ``bindings/python/src/smg/router_args.py``. The router
keeps its own *approximate* tree of the prompts it sent to each worker (it never asks the
engines) and router-side loads (requests sent and not finished). Per request:

1. Over healthy workers, the pool is *imbalanced* when ``max_load - min_load >
   balance_abs_threshold`` AND ``max_load > balance_rel_threshold * min_load``: the request
   goes to the least loaded worker (ties: fewest requests ever routed, SGLang's
   ``processed`` tie-break, then at random).
2. Otherwise it finds the deepest prefix of the prompt held by any worker. If the matched
   share of the prompt is above ``cache_threshold`` it goes to a worker holding that
   deepest node (SGLang takes "any tenant" of the node; here one at random); else to the
   least loaded worker, as in step 1.
3. The prompt is inserted into the chosen worker's tree. Every ``eviction_interval_s`` the
   least recently used leaves of each tree are evicted until it holds at most
   ``max_tree_tokens`` tokens (SGLang's periodic ``evict_tenant_by_size``).

Defaults are the gateway's CLI defaults: ``cache_threshold=0.3``,
``balance_abs_threshold=64``, ``balance_rel_threshold=1.5``, ``eviction_interval_s=120``,
``max_tree_tokens=2**26``. The older sgl-router behaviour (low-match requests to the worker
with the smallest tree, least-loaded holder on a hit, ``0.5 / 32 / 1.0001``) is available as
``low_match="smallest_tree", holder="least_load", cache_threshold=0.5,
balance_abs_threshold=32, balance_rel_threshold=1.0001``.

Deliberate differences: the tree is over the request's chained block hashes, in
``tree_block_tokens`` (64) token blocks (every 4th 16-token hash; SGLang's token tree uses
16-token pages, its HTTP tree characters) and at most ``max_prefix_blocks`` (256) blocks per
path (16k tokens: longer prompts are judged on that tracked head), which keeps a decision
near 20 us; the optional KV-usage imbalance triggers (``balance_token_usage_threshold``,
``overload_token_usage_threshold``, off by default) and the event-driven mode are not
modelled; the clock is ``RequestView.arrival_s`` (a request without one does not advance
it, and a tree grown past twice its bound is evicted at once). ``load="views"`` uses the
views' outstanding counts instead of router-side counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, index_mask
from fleetsched.policies.routing.ledger import Ledger
from fleetsched.policies.routing.prefix_index import PrefixIndex, strided


class CacheAware:
    needs_prefix = False

    def __init__(
        self,
        seed: int = 0,
        cache_threshold: float = 0.3,
        balance_abs_threshold: int = 64,
        balance_rel_threshold: float = 1.5,
        eviction_interval_s: float = 120.0,
        max_tree_tokens: int = 1 << 26,
        low_match: str = "min_load",
        holder: str = "any",
        load: str = "router",
        tree_block_tokens: int = 64,
        max_prefix_blocks: int = 256,
    ) -> None:
        for name, val, ok in (
            ("load", load, ("router", "views")),
            ("low_match", low_match, ("min_load", "smallest_tree")),
            ("holder", holder, ("any", "least_load")),
        ):
            if val not in ok:
                options = " or ".join(repr(o) for o in ok)
                raise InputError(f"cache_aware: {name} must be {options}, got {val!r}")
        if max_tree_tokens < 1 or tree_block_tokens < 1 or max_prefix_blocks < 1:
            raise InputError(
                "cache_aware: max_tree_tokens, tree_block_tokens, max_prefix_blocks must be >= 1"
            )
        if eviction_interval_s <= 0:
            raise InputError("cache_aware: eviction_interval_s must be > 0")
        self.cache_threshold = cache_threshold
        self.balance_abs_threshold = balance_abs_threshold
        self.balance_rel_threshold = balance_rel_threshold
        self.eviction_interval_s = eviction_interval_s
        self.max_tree_tokens = max_tree_tokens
        self.low_match = low_match
        self.holder = holder
        self.load = load
        self.tree_block_tokens = tree_block_tokens
        self.max_prefix_blocks = max_prefix_blocks
        self.needs_views = load == "views"
        self.index = PrefixIndex()
        self.ledger = Ledger()
        self._rng = UniformStream(seed)
        self._last_evict: float | None = None
        self._max_unit = 1  # largest tree block (tokens) seen, for the size bound
        #: What the last decision was: "imbalanced", "cache" or "low_match".
        self.last_reason = ""

    # ----------------------------------------------------------------------------- tree
    def tree_keys(self, req: RequestView) -> tuple[Sequence[int], int]:
        """The request's path in the tree and the tokens per tree block (at most
        ``max_prefix_blocks`` blocks of ``tree_block_tokens``)."""
        hs, unit = strided(req.block_hashes, req.hash_block_tokens, self.tree_block_tokens)
        if len(hs) > self.max_prefix_blocks:
            hs = hs[: self.max_prefix_blocks]
        return hs, unit

    def tree_blocks(self, index: int) -> int:
        """Blocks currently in instance ``index``'s tree."""
        return self.index.size(index)

    def outstanding(self, index: int) -> int:
        """Router-side count of requests sent to ``index`` and not finished."""
        led = self.ledger.requests
        return led[index] if index < len(led) else 0

    def match_blocks(self, index: int, hashes: Sequence[int]) -> int:
        """Length (in blocks) of the longest prefix of ``hashes`` in ``index``'s tree."""
        return self.index.match(index, hashes)

    def _maybe_evict(self, now: float | None, unit: int, grown: int) -> None:
        if unit > self._max_unit:
            self._max_unit = unit
        if now is not None:
            if self._last_evict is None:
                self._last_evict = now
            elif now - self._last_evict >= self.eviction_interval_s:
                self._last_evict = now
                self.evict()
                return
        # Safety bound (no clock, or a burst within one interval): only ``grown`` grew.
        if self.index.size(grown) > 2 * self.max_tree_tokens // self._max_unit:
            self.evict()

    def evict(self) -> None:
        """Evict every tree down to ``max_tree_tokens`` (least recently used leaves first)."""
        keep = max(self.max_tree_tokens // self._max_unit, 1)
        for i in range(len(self.ledger.requests)):
            self.index.evict(i, keep)

    # ---------------------------------------------------------------------------- route
    def _min_load(self, idx: list[int], loads: list[int]) -> int:
        routed = self.ledger.routed
        keys = [(ld, routed[i]) for i, ld in zip(idx, loads, strict=True)]
        lo = min(keys)
        if keys.count(lo) == 1:
            return idx[keys.index(lo)]
        ties = [i for i, k in zip(idx, keys, strict=True) if k == lo]
        return ties[self._rng.index(len(ties))]

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = [v for v in instances if v.healthy] or instances
        idx = [v.index for v in cands]
        top = max(idx) + 1
        if top > len(self.ledger.requests):
            self.ledger.grow(top)
            self.index.grow(top)
        if self.load == "router":
            ld = self.ledger.requests
            loads = [ld[i] for i in idx]
        else:
            loads = [v.queue_len + v.running for v in cands]
        hashes, unit = self.tree_keys(req)
        mx, mn = max(loads), min(loads)
        held: int | None = None
        if mx - mn > self.balance_abs_threshold and mx > self.balance_rel_threshold * mn:
            self.last_reason = "imbalanced"
            chosen = self._min_load(idx, loads)
        else:
            matched, holders = self.index.deepest(hashes, index_mask(idx))
            # The share of the tracked prompt that matched (a path cut at max_prefix_blocks
            # tracks only its head, so long prompts are judged on that head).
            p = req.prompt_tokens
            if len(hashes) == self.max_prefix_blocks:
                p = min(p, len(hashes) * unit)
            rate = matched * unit / p if p > 0 else 0.0
            if holders and rate > self.cache_threshold:
                self.last_reason = "cache"
                held = matched
                chosen = self._pick_holder(holders, idx, loads)
            else:
                self.last_reason = "low_match"
                if self.low_match == "min_load":
                    chosen = self._min_load(idx, loads)
                else:
                    sizes = [self.index.size(i) for i in idx]
                    chosen = self._min_load(idx, sizes)
        self.index.insert(chosen, hashes, held)
        self.ledger.dispatch(req, chosen)
        self._maybe_evict(req.arrival_s, unit, chosen)
        return chosen

    def _pick_holder(self, holders: int, idx: list[int], loads: list[int]) -> int:
        members = []
        m = holders
        while m:
            low = m & -m
            members.append(low.bit_length() - 1)
            m ^= low
        if len(members) == 1:
            return members[0]
        if self.holder == "any":
            return members[self._rng.index(len(members))]
        load_of = dict(zip(idx, loads, strict=True))
        return self._min_load(members, [load_of[i] for i in members])

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)
