"""Cache-aware routing as in SGLang's router (sgl-router ``cache_aware`` policy).

The router keeps its own *approximate* radix tree of the prompts it has sent to each
instance (it never asks the engines what they cache), and per request:

1. Load check over healthy instances, with router-side loads (requests routed and not yet
   finished, as sgl-router counts them): the system is *imbalanced* when
   ``max - min > balance_abs_threshold`` AND ``max > balance_rel_threshold * min``. Then it
   sends to the least loaded instance (shortest queue).
2. Otherwise it finds the instance holding the longest prefix of the prompt. If the matched
   share of the prompt (``match_rate``) is above ``cache_threshold`` it goes there; if not,
   to the instance with the smallest tree (the most room to cache something new).
3. The prompt is inserted into the chosen instance's tree. Each tree is bounded to
   ``max_tree_blocks`` blocks by LRU eviction of leaves.

Defaults are sgl-router's: ``cache_threshold=0.5``, ``balance_abs_threshold=32``,
``balance_rel_threshold=1.0001``. sgl-router's tree is over characters; here it is over the
request's chained block hashes, which is the same tree at block granularity: hash ``i``
stands for the whole prefix up to block ``i``, so a per-instance ``{hash: stamp}`` dict *is*
a trie. Stamps grow with time and shrink with depth, so ancestors are always more recent
than descendants: evicting the oldest stamps removes leaves first and each tree stays
prefix-closed, which lets the longest match be found by binary search.

``load="views"`` uses the views' outstanding counts instead of router-side counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError

_SPAN = 1 << 32  # stamp = tick * _SPAN + (_SPAN - 1 - depth)
_EMPTY: frozenset[int] = frozenset()


class CacheAware:
    needs_prefix = False

    def __init__(
        self,
        seed: int = 0,
        cache_threshold: float = 0.5,
        balance_abs_threshold: int = 32,
        balance_rel_threshold: float = 1.0001,
        max_tree_blocks: int = 1 << 16,
        load: str = "router",
    ) -> None:
        if load not in ("router", "views"):
            raise InputError(f"cache_aware: load must be 'router' or 'views', got {load!r}")
        if max_tree_blocks < 1:
            raise InputError("cache_aware: max_tree_blocks must be >= 1")
        self.cache_threshold = cache_threshold
        self.balance_abs_threshold = balance_abs_threshold
        self.balance_rel_threshold = balance_rel_threshold
        self.max_tree_blocks = max_tree_blocks
        self.load = load
        self.needs_views = load == "views"
        self._trees: dict[int, dict[int, int]] = {}
        self._owners: dict[int, set[int]] = {}
        self._load: dict[int, int] = {}
        self._tick = 0
        #: What the last decision was: "imbalanced", "cache" or "smallest_tree".
        self.last_reason = ""

    # ----------------------------------------------------------------------------- tree
    def tree_blocks(self, index: int) -> int:
        """Blocks currently in instance ``index``'s tree."""
        return len(self._trees.get(index, ()))

    def match_blocks(self, index: int, hashes: Sequence[int]) -> int:
        """Length (in blocks) of the longest prefix of ``hashes`` in ``index``'s tree."""
        tree = self._trees.get(index)
        if not tree:
            return 0
        lo, hi = 0, len(hashes)  # invariant: hashes[:lo] held, hashes[hi:] not
        while lo < hi:
            mid = (lo + hi) // 2
            if hashes[mid] in tree:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _deepest(self, hashes: Sequence[int], cand: set[int]) -> tuple[int, set[int]]:
        """Longest prefix held by any candidate, and the candidates holding it."""
        owners = self._owners
        lo, hi = 0, len(hashes)
        while lo < hi:
            mid = (lo + hi) // 2
            if owners.get(hashes[mid], _EMPTY).isdisjoint(cand):
                hi = mid
            else:
                lo = mid + 1
        if lo == 0:
            return 0, set()
        return lo, owners[hashes[lo - 1]] & cand

    def _insert(self, index: int, hashes: Sequence[int], held: int) -> None:
        """Insert/touch the prompt in ``index``'s tree; ``held`` blocks were already there."""
        n = len(hashes)
        if n == 0:
            return
        self._tick += 1
        base = self._tick * _SPAN + _SPAN - 1
        tree = self._trees.get(index)
        if tree is None:
            tree = self._trees[index] = {}
        tree.update(zip(hashes, range(base, base - n, -1)))
        owners = self._owners
        for h in hashes[held:]:
            s = owners.get(h)
            if s is None:
                owners[h] = {index}
            else:
                s.add(index)
        if len(tree) > self.max_tree_blocks:
            self._evict(index, tree)

    def _evict(self, index: int, tree: dict[int, int]) -> None:
        """LRU-evict leaves down to max_tree_blocks (minus 1/16 hysteresis, amortising the
        sort as sgl-router's periodic eviction does)."""
        keep = self.max_tree_blocks - self.max_tree_blocks // 16
        drop = len(tree) - keep
        owners = self._owners
        for h, _ in sorted(tree.items(), key=itemgetter(1))[:drop]:
            del tree[h]
            s = owners[h]
            s.discard(index)
            if not s:
                del owners[h]

    # ---------------------------------------------------------------------------- route
    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = [v for v in instances if v.healthy] or list(instances)
        if self.load == "router":
            ld = self._load
            loads = [ld.get(v.index, 0) for v in cands]
        else:
            loads = [v.queue_len + v.running for v in cands]
        hashes = req.block_hashes
        mx, mn = max(loads), min(loads)
        if mx - mn > self.balance_abs_threshold and mx > self.balance_rel_threshold * mn:
            self.last_reason = "imbalanced"
            chosen = _argmin(cands, loads)
            held = self.match_blocks(chosen, hashes)
        else:
            matched, holders = self._deepest(hashes, {v.index for v in cands})
            p = req.prompt_tokens
            rate = matched * req.hash_block_tokens / p if p > 0 else 0.0
            if holders and rate > self.cache_threshold:
                self.last_reason = "cache"
                sub = [(v, lo) for v, lo in zip(cands, loads, strict=True) if v.index in holders]
                chosen = _argmin([v for v, _ in sub], [lo for _, lo in sub])
                held = matched
            else:
                self.last_reason = "smallest_tree"
                trees = self._trees
                chosen = _argmin(cands, [len(trees.get(v.index, ())) for v in cands])
                held = self.match_blocks(chosen, hashes)
        self._insert(chosen, hashes, held)
        self._load[chosen] = self._load.get(chosen, 0) + 1
        return chosen

    def on_finish(self, req: RequestView, index: int) -> None:
        n = self._load.get(index, 0)
        if n > 0:
            self._load[index] = n - 1


def _argmin(views: Sequence[InstanceView], keys: Sequence[int]) -> int:
    best = views[0].index
    bk = keys[0]
    for v, k in zip(views, keys, strict=True):
        if k < bk or (k == bk and v.index < best):
            best, bk = v.index, k
    return best
