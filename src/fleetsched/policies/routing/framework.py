"""Composable routing: filters -> weighted scorers -> picker, wired by a :class:`Profile`.

Modelled on the scheduling framework of the Kubernetes Gateway API Inference Extension (the
endpoint picker that llm-d extends): a *filter* narrows the candidate instances, each
*scorer* gives every candidate a score in [0, 1] (higher is better), the weighted sum of the
scores is handed to a *picker* that chooses one. All three are plain callables:

* ``Filter(req, views) -> views``     a subset, order kept
* ``Scorer(req, views) -> list[float]`` one score per view, in [0, 1]
* ``Picker(views, scores, rng) -> view``

A filter that leaves no candidate is skipped (the profile keeps the previous set), so a
profile always answers. A scorer that reads ``InstanceView.cached_prefix_tokens`` carries
``needs_prefix = True``; a profile using one asks the runtime for prefix matches. A scorer
with state (``ApproxPrefixScorer``, fed by routing history) also has ``picked(req, view)``,
which the profile calls with the chosen instance (the endpoint picker's ``PreRequest``).
Ties between equal scores break at random from the profile's seeded generator, as the
endpoint picker's pickers shuffle candidates before sorting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, index_mask
from fleetsched.policies.routing.prefix_index import PrefixIndex, lengths_of, strided

Views = Sequence[InstanceView]
Filter = Callable[[RequestView, Views], Views]
Scorer = Callable[[RequestView, Views], list[float]]
Picker = Callable[[Views, list[float], UniformStream], InstanceView]


# ---------------------------------------------------------------------------------- filters
def healthy(req: RequestView, views: Views) -> Views:
    """Instances that pass their health check."""
    return [v for v in views if v.healthy]


def model_match(req: RequestView, views: Views) -> Views:
    """Instances serving the requested model (base model or a loaded LoRA adapter of that
    name). A request without a model matches every instance."""
    m = req.model
    if m is None:
        return views
    return [v for v in views if v.model == m or m in v.lora_adapters]


def role(*roles: str) -> Filter:
    """Instances whose role (``"prefill"``, ``"decode"`` or ``"mixed"``) is one of ``roles``."""
    allowed = frozenset(roles)

    def role_filter(req: RequestView, views: Views) -> Views:
        return [v for v in views if v.role in allowed]

    role_filter.__name__ = f"role({', '.join(roles)})"
    return role_filter


def not_saturated(max_queue: int | None = 128, max_kv: float | None = 0.95) -> Filter:
    """Instances with ``queue_len <= max_queue`` and ``kv_utilization <= max_kv`` (None turns
    a test off). If every instance is saturated, all of them pass: shedding load is the job
    of admission control, not of the router."""

    def not_saturated_filter(req: RequestView, views: Views) -> Views:
        out = [
            v
            for v in views
            if (max_queue is None or v.queue_len <= max_queue)
            and (max_kv is None or v.kv_utilization <= max_kv)
        ]
        return out if out else views

    return not_saturated_filter


# ---------------------------------------------------------------------------------- scorers
def _low_is_good(xs: Sequence[float]) -> list[float]:
    """Min-max normalise so the smallest value scores 1 and the largest 0 (all equal: 1)."""
    lo, hi = min(xs), max(xs)
    if hi == lo:
        return [1.0] * len(xs)
    span = hi - lo
    return [(hi - x) / span for x in xs]


def queue_score(req: RequestView, views: Views) -> list[float]:
    """Fewer waiting requests is better, min-max normalised over the candidates (all equal:
    1), as the endpoint picker's ``queue-scorer`` scores ``WaitingQueueSize``
    (``vllm:num_requests_waiting``)."""
    return _low_is_good([v.queue_len for v in views])


def outstanding_score(req: RequestView, views: Views) -> list[float]:
    """Fewer outstanding requests (waiting + running) is better, min-max normalised."""
    return _low_is_good([v.queue_len + v.running for v in views])


def kv_score(req: RequestView, views: Views) -> list[float]:
    """Free KV cache: ``1 - kv_utilization``."""
    return [1.0 - v.kv_utilization for v in views]


def prefix_score(req: RequestView, views: Views) -> list[float]:
    """Share of the prompt already in the instance's prefix cache."""
    p = req.prompt_tokens
    if p <= 0:
        return [0.0] * len(views)
    inv = 1.0 / p
    out = [v.cached_prefix_tokens * inv for v in views]
    if max(out) > 1.0:
        out = [x if x < 1.0 else 1.0 for x in out]
    return out


prefix_score.needs_prefix = True  # type: ignore[attr-defined]


def precise_prefix_score(block_tokens: int = 64) -> Scorer:
    """llm-d's ``precise-prefix-cache-scorer``: full ``block_tokens`` blocks of the prompt in
    the instance's prefix cache over the prompt's full blocks (the engine's cache as KV events
    report it: ``cached_prefix_tokens``)."""
    if block_tokens < 1:
        raise InputError("precise prefix scorer: block_tokens must be >= 1")

    def precise_prefix(req: RequestView, views: Views) -> list[float]:
        total = req.prompt_tokens // block_tokens
        if total <= 0:
            return [0.0] * len(views)
        inv = 1.0 / total
        return [min(v.cached_prefix_tokens // block_tokens, total) * inv for v in views]

    precise_prefix.needs_prefix = True  # type: ignore[attr-defined]
    return precise_prefix


class ApproxPrefixScorer:
    """llm-d's approximate prefix cache (``approx-prefix-cache-producer`` +
    ``prefix-cache-scorer``): an index of the prompts the router sent to each instance, fed
    by its own routing history. Score = the instance's matched blocks / the prompt's blocks,
    over at most ``max_prefix_tokens`` (llm-d: 256 blocks of 16 tokens); after the pick the
    prompt's blocks are added to the chosen instance's LRU, whose capacity is the engine's KV
    blocks (llm-d's ``autoTune`` reads ``num_gpu_blocks``; 31,250 without metrics).

    Differences from llm-d: blocks are the request's chained hash blocks taken in
    ``unit_tokens`` (64) token units, every 4th 16-token hash (llm-d hashes 16-token blocks of
    ~4 characters per token of the raw text; the coarser unit is a quarter of the work per
    request and rounds a match down to 64 tokens); eviction drops whole least recently sent
    prompts at once, leaves first, so each instance's set stays prefix-closed (llm-d's
    per-block LRU may drop a prompt's first block before its last).
    """

    needs_prefix = False

    def __init__(
        self,
        max_prefix_tokens: int = 256 * BLOCK_TOKENS,
        lru_blocks: int | None = None,
        block_tokens: int = BLOCK_TOKENS,
        unit_tokens: int = 64,
    ) -> None:
        if max_prefix_tokens < 1 or unit_tokens < 1 or (lru_blocks is not None and lru_blocks < 1):
            raise InputError(
                "approximate prefix scorer: max_prefix_tokens, unit_tokens, lru_blocks >= 1"
            )
        self.max_prefix_tokens = max_prefix_tokens
        self.lru_blocks = lru_blocks
        self.block_tokens = block_tokens
        self.unit_tokens = unit_tokens
        self.index = PrefixIndex()
        self._last: tuple[int, Sequence[int], int] = (-1, (), 1)

    def _hashes(self, req: RequestView) -> tuple[Sequence[int], int]:
        """The tracked head of the prompt's chain, and the tokens per block of it."""
        if self._last[0] == req.id:
            return self._last[1], self._last[2]
        hs, unit = strided(req.block_hashes, req.hash_block_tokens, self.unit_tokens)
        cap = max(self.max_prefix_tokens // max(unit, 1), 1)
        if len(hs) > cap:
            hs = hs[:cap]
        self._last = (req.id, hs, unit)
        return hs, unit

    def __call__(self, req: RequestView, views: Views) -> list[float]:
        hs, bt = self._hashes(req)
        total = -(-min(req.prompt_tokens, self.max_prefix_tokens) // bt) if bt > 0 else 0
        if not hs or total <= 0:
            return [0.0] * len(views)
        idx = [v.index for v in views]
        self.index.grow(max(idx) + 1)
        groups = self.index.match_groups(hs, index_mask(idx))
        if not groups:
            return [0.0] * len(views)
        inv = 1.0 / total
        return [n * inv for n in lengths_of(groups, idx)]

    def picked(self, req: RequestView, view: InstanceView) -> None:
        hs, unit = self._hashes(req)
        if not hs:
            return
        i = view.index
        self.index.grow(i + 1)
        self.index.insert(i, hs)
        cap = self.lru_blocks  # in engine blocks (llm-d: num_gpu_blocks, else 31,250)
        if cap is None:
            cap = view.total_blocks if view.total_blocks > 0 else 31_250
        cap = max(cap * self.block_tokens // unit, 1)
        if self.index.size(i) > cap:
            self.index.evict(i, cap - cap // 16)


def load_score(req: RequestView, views: Views) -> list[float]:
    """Fewer in-flight tokens is better, min-max normalised over the candidates."""
    return _low_is_good([v.inflight_tokens for v in views])


def lora_score(req: RequestView, views: Views) -> list[float]:
    """1 where the requested model is a loaded LoRA adapter, else 0."""
    m = req.model
    if m is None:
        return [0.0] * len(views)
    return [1.0 if m in v.lora_adapters else 0.0 for v in views]


# ---------------------------------------------------------------------------------- pickers
def max_score(views: Views, scores: list[float], rng: UniformStream) -> InstanceView:
    """Highest score; ties at random from ``rng`` (the ``max-score-picker`` shuffles the
    candidates before its stable sort)."""
    hi = max(scores)
    if scores.count(hi) == 1:
        return views[scores.index(hi)]
    ties = [v for v, s in zip(views, scores, strict=True) if s == hi]
    return ties[rng.index(len(ties))]


def weighted_random(views: Views, scores: list[float], rng: UniformStream) -> InstanceView:
    """Random, with probability proportional to score (uniform if all scores are 0)."""
    total = sum(scores)
    if total <= 0.0:
        return views[rng.index(len(views))]
    u = rng.random() * total
    acc = 0.0
    for v, s in zip(views, scores, strict=True):
        acc += s
        if u < acc:
            return v
    return views[-1]


def power_of_two(views: Views, scores: list[float], rng: UniformStream) -> InstanceView:
    """Two distinct random candidates; the higher score wins (tie: either, at random)."""
    n = len(views)
    if n == 1:
        return views[0]
    i, j = rng.two(n)
    if scores[i] > scores[j] or (scores[i] == scores[j] and rng.random() < 0.5):
        return views[i]
    return views[j]


# ---------------------------------------------------------------------------------- profile
class Profile:
    """A routing policy made of filters, weighted scorers and a picker.

    ``scorers`` is a sequence of ``(scorer, weight)`` pairs; with none, every candidate scores
    0 and the picker decides alone (``max_score`` then picks at random).
    """

    needs_views = True

    def __init__(
        self,
        filters: Sequence[Filter] = (healthy,),
        scorers: Sequence[tuple[Scorer, float]] = (),
        picker: Picker = max_score,
        seed: int = 0,
    ) -> None:
        self.filters = tuple(filters)
        self.scorers = tuple((s, float(w)) for s, w in scorers)
        self.picker = picker
        self.needs_prefix = any(getattr(s, "needs_prefix", False) for s, _ in self.scorers)
        self._picked = [s.picked for s, _ in self.scorers if hasattr(s, "picked")]
        self._rng = UniformStream(seed)

    def candidates(self, req: RequestView, views: Views) -> Views:
        cands = views
        for f in self.filters:
            out = f(req, cands)
            if out:
                cands = out
        return cands

    def scores(self, req: RequestView, cands: Views) -> list[float]:
        """Weighted sum of the scorers' scores, one per candidate."""
        sc = self.scorers
        if not sc:
            return [0.0] * len(cands)
        lists = [s(req, cands) for s, _ in sc]
        if len(sc) == 1:
            w = sc[0][1]
            return [w * a for a in lists[0]]
        if len(sc) == 2:
            (_, w0), (_, w1) = sc
            return [w0 * a + w1 * b for a, b in zip(*lists, strict=True)]
        if len(sc) == 3:
            (_, w0), (_, w1), (_, w2) = sc
            return [w0 * a + w1 * b + w2 * c for a, b, c in zip(*lists, strict=True)]
        total = [sc[0][1] * a for a in lists[0]]
        for (_, w), xs in zip(sc[1:], lists[1:], strict=True):
            total = [a + w * b for a, b in zip(total, xs, strict=True)]
        return total

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = self.candidates(req, instances)
        if len(cands) == 1:
            chosen = cands[0]
        else:
            chosen = self.picker(cands, self.scores(req, cands), self._rng)
        for hook in self._picked:
            hook(req, chosen)
        return chosen.index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass


# ------------------------------------------------------------------- by name (scenario YAML)
FILTERS: dict[str, Filter] = {
    "healthy": healthy,
    "model": model_match,
    "prefill": role("prefill", "mixed"),
    "decode": role("decode", "mixed"),
    "not_saturated": not_saturated(),
}
SCORERS: dict[str, Scorer] = {
    "queue": queue_score,
    "outstanding": outstanding_score,
    "kv": kv_score,
    "prefix": prefix_score,
    "load": load_score,
    "lora": lora_score,
}
#: Scorers with state: a fresh one per profile.
SCORER_FACTORIES: dict[str, Callable[[], Scorer]] = {
    "approx_prefix": ApproxPrefixScorer,
    "precise_prefix": precise_prefix_score,
}
PICKERS: dict[str, Picker] = {
    "max": max_score,
    "weighted_random": weighted_random,
    "power_of_two": power_of_two,
}


def _lookup(table: Mapping[str, object], kind: str, name: str) -> object:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise InputError(f"unknown {kind} {name!r} (known: {known})") from None


def picker_named(name: str) -> Picker:
    """The picker registered as ``name`` (InputError if unknown)."""
    return _lookup(PICKERS, "picker", name)  # type: ignore[return-value]


def make_profile(
    seed: int = 0,
    filters: Sequence[str] = ("healthy", "model"),
    scorers: Mapping[str, float] | None = None,
    picker: str = "max",
    max_queue: int | None = None,
    max_kv: float | None = None,
) -> Profile:
    """A :class:`Profile` from names, e.g. ``scorers={"prefix": 3, "queue": 2, "kv": 2}``.

    ``max_queue`` / ``max_kv`` set the thresholds of the ``not_saturated`` filter."""
    fs: list[Filter] = []
    for name in filters:
        if name == "not_saturated" and (max_queue is not None or max_kv is not None):
            fs.append(not_saturated(max_queue, max_kv))
        else:
            fs.append(_lookup(FILTERS, "filter", name))  # type: ignore[arg-type]
    known = {**SCORERS, **SCORER_FACTORIES}
    sc = []
    for name, w in (scorers if scorers is not None else {"queue": 1.0}).items():
        scorer = _lookup(known, "scorer", name)
        sc.append((scorer() if name in SCORER_FACTORIES else scorer, float(w)))  # type: ignore[operator]
    return Profile(fs, sc, picker_named(picker), seed=seed)  # type: ignore[arg-type]


__all__ = [
    "FILTERS",
    "PICKERS",
    "SCORERS",
    "SCORER_FACTORIES",
    "ApproxPrefixScorer",
    "Filter",
    "Picker",
    "Profile",
    "Scorer",
    "healthy",
    "kv_score",
    "load_score",
    "lora_score",
    "make_profile",
    "max_score",
    "model_match",
    "not_saturated",
    "outstanding_score",
    "picker_named",
    "power_of_two",
    "precise_prefix_score",
    "prefix_score",
    "queue_score",
    "role",
    "weighted_random",
]
