"""Output-length history and predictors shared by engine policies.

``LengthHistory`` keeps a sliding window of finished requests' output lengths, sorted, so a
(conditional) quantile costs O(log n) and an insertion O(window) memmove. Predictors estimate a
request's *total* output tokens for length-aware orderings (``sjf``, ``wfq``):

- ``oracle``: the request's true ``output_tokens`` (what a perfect predictor would say);
- ``mean``: running mean of all finished outputs on this engine;
- ``tenant``: running mean of the request's tenant (falls back to the global mean);
- ``quantile``: the ``q``-quantile of the last ``window`` finished outputs.

Until anything has finished, every predictor but ``oracle`` answers ``prior_output_tokens``.
A predictor splits requests into *groups* that share one prediction (everything for ``mean``
and ``quantile``, a tenant for ``tenant``); ``oracle`` predicts per request. Queues use the
groups to stay exact as predictions move: a group's requests keep their relative order.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._params import check_quantile

if TYPE_CHECKING:
    from fleetsched.core.request import Request


class LengthHistory:
    """Sliding window of the last ``window`` lengths, kept sorted for quantiles."""

    __slots__ = ("_fifo", "_sorted", "version", "window")

    def __init__(self, window: int = 10_000) -> None:
        if window < 1:
            raise InputError(f"window must be >= 1, got {window}")
        self.window = window
        self._fifo: deque[int] = deque()
        self._sorted: list[int] = []
        self.version = 0  # bumped by every add (lets callers cache derived arrays)

    def add(self, length: int) -> None:
        self.version += 1
        self._fifo.append(length)
        insort(self._sorted, length)
        if len(self._fifo) > self.window:
            old = self._fifo.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def __len__(self) -> int:
        return len(self._sorted)

    def max(self) -> int | None:
        return self._sorted[-1] if self._sorted else None

    @property
    def values(self) -> list[int]:
        """The window, sorted (read-only view: do not mutate)."""
        return self._sorted

    def quantile(self, q: float, above: int = -1) -> int | None:
        """Nearest-rank ``q``-quantile of the lengths ``> above`` (None when there are none).

        Of m sorted values ``v[0..m-1]`` it returns ``v[ceil(q*m) - 1]`` (at least ``v[0]``).
        """
        s = self._sorted
        lo = bisect_right(s, above)
        m = len(s) - lo
        if m == 0:
            return None
        return s[lo + rank(q, m)]


def rank(q: float, m: int) -> int:
    """0-based index of the nearest-rank ``q``-quantile among ``m`` sorted values."""
    return min(max(math.ceil(q * m - 1e-9), 1), m) - 1


class Predictor:
    """Predicts a request's total output tokens: ``predict_group(group(req)) + own(req)``."""

    name = "base"

    def __init__(self, prior_output_tokens: float) -> None:
        if prior_output_tokens <= 0:
            raise InputError(f"prior_output_tokens must be > 0, got {prior_output_tokens}")
        self.prior = float(prior_output_tokens)
        self._sum = 0
        self._n = 0

    def group(self, req: Request) -> Hashable:
        return None

    def predict_group(self, group: Hashable) -> float:
        return self.prior if self._n == 0 else self._sum / self._n

    def own(self, req: Request) -> float:
        """The request-specific part of the prediction (0 unless the predictor is an oracle)."""
        return 0.0

    def observe(self, req: Request, output_tokens: int) -> None:
        self._sum += output_tokens
        self._n += 1

    def predict(self, req: Request) -> float:
        return self.predict_group(self.group(req)) + self.own(req)


class OraclePredictor(Predictor):
    name = "oracle"

    def predict_group(self, group: Hashable) -> float:
        return 0.0

    def own(self, req: Request) -> float:
        return float(req.output_tokens)


class MeanPredictor(Predictor):
    name = "mean"


class TenantPredictor(Predictor):
    name = "tenant"

    def __init__(self, prior_output_tokens: float) -> None:
        super().__init__(prior_output_tokens)
        self._by_tenant: dict[str, list[int]] = {}  # tenant -> [sum, count]

    def group(self, req: Request) -> Hashable:
        return req.tenant

    def predict_group(self, group: Hashable) -> float:
        s = self._by_tenant.get(group)  # type: ignore[arg-type]
        if s is not None:
            return s[0] / s[1]
        return super().predict_group(None)

    def observe(self, req: Request, output_tokens: int) -> None:
        super().observe(req, output_tokens)
        s = self._by_tenant.setdefault(req.tenant, [0, 0])
        s[0] += output_tokens
        s[1] += 1


class QuantilePredictor(Predictor):
    name = "quantile"

    def __init__(self, prior_output_tokens: float, q: float, window: int) -> None:
        super().__init__(prior_output_tokens)
        self.q = check_quantile(q)
        self.history = LengthHistory(window)

    def predict_group(self, group: Hashable) -> float:
        v = self.history.quantile(self.q)
        return self.prior if v is None else float(v)

    def observe(self, req: Request, output_tokens: int) -> None:
        self.history.add(output_tokens)


PREDICTORS = ("oracle", "mean", "tenant", "quantile")


def make_predictor(
    name: str, *, q: float = 0.5, prior_output_tokens: float = 256, window: int = 10_000
) -> Predictor:
    if name == "oracle":
        return OraclePredictor(prior_output_tokens)
    if name == "mean":
        return MeanPredictor(prior_output_tokens)
    if name == "tenant":
        return TenantPredictor(prior_output_tokens)
    if name == "quantile":
        return QuantilePredictor(prior_output_tokens, q, window)
    raise InputError(f"unknown output-length predictor {name!r} (known: {', '.join(PREDICTORS)})")
