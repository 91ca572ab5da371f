"""The judge of multi-model runs: whether each answer was correct.

A request with a task class, served by model ``m``, is correct with probability
:func:`~fleetsched.workload.tasks.quality` (the scenario's quality table, adjusted for the
request's difficulty). The draw is a pure function of the seed and the request id, so it
does not depend on the order requests finish in, and the same request served by the same
model is judged the same under every policy (common random numbers across policies).
"""

from __future__ import annotations

import math

from fleetsched.core.request import Request
from fleetsched.workload.tasks import QualityTable, quality

_MASK = (1 << 64) - 1


def _uniform(seed: int, rid: int) -> float:
    """SplitMix64 of (seed, id) mapped to [0, 1)."""
    z = (seed * 0x9E3779B97F4A7C15 + rid * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) >> 11) / float(1 << 53)


class Judge:
    """Draws correctness of answers from a quality table."""

    __slots__ = ("seed", "table")

    def __init__(self, table: QualityTable, seed: int = 0) -> None:
        self.table = table
        self.seed = seed

    def judge(self, req: Request, model: str) -> tuple[float, float]:
        """(success probability, 1.0 correct / 0.0 wrong); (NaN, NaN) without a task class."""
        q = quality(self.table, req.task_class, model, req.difficulty)
        if math.isnan(q):
            return q, q
        return q, 1.0 if _uniform(self.seed, req.id) < q else 0.0
