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
``needs_prefix = True``; a profile using one asks the runtime for prefix matches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream

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
    """Fewer outstanding requests (queued + running) is better, min-max normalised over the
    candidates. (The Inference Extension's queue scorer uses the waiting queue only; running
    requests are included here because vLLM admits most requests to the batch at once.)"""
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
    """Highest score; ties go to the lowest instance index (deterministic)."""
    hi = max(scores)
    if scores.count(hi) == 1:
        return views[scores.index(hi)]
    return min((v for v, s in zip(views, scores, strict=True) if s == hi), key=_index)


def _index(v: InstanceView) -> int:
    return v.index


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
    """Two distinct random candidates; the higher score wins (tie: lower index)."""
    n = len(views)
    if n == 1:
        return views[0]
    i, j = rng.two(n)
    a, b = views[i], views[j]
    if scores[i] > scores[j] or (scores[i] == scores[j] and a.index < b.index):
        return a
    return b


# ---------------------------------------------------------------------------------- profile
class Profile:
    """A routing policy made of filters, weighted scorers and a picker.

    ``scorers`` is a sequence of ``(scorer, weight)`` pairs; with none, every candidate scores
    0 and the picker decides alone (``max_score`` then picks the lowest index).
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
            return cands[0].index
        return self.picker(cands, self.scores(req, cands), self._rng).index

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
    "kv": kv_score,
    "prefix": prefix_score,
    "load": load_score,
    "lora": lora_score,
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
    sc = [
        (_lookup(SCORERS, "scorer", name), float(w))
        for name, w in (scorers if scorers is not None else {"queue": 1.0}).items()
    ]
    return Profile(fs, sc, picker_named(picker), seed=seed)  # type: ignore[arg-type]


__all__ = [
    "FILTERS",
    "PICKERS",
    "SCORERS",
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
    "picker_named",
    "power_of_two",
    "prefix_score",
    "queue_score",
    "role",
    "weighted_random",
]
