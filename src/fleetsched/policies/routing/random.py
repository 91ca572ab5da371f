"""Uniform random choice among healthy instances.

The stateless baseline (``random`` policy of SGLang's router, llm-d's ``random-picker``).
All randomness comes from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.policies.routing._util import UniformStream, healthy


class RandomRouter:
    needs_views = False
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        self._rng = UniformStream(seed)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        return cands[self._rng.index(len(cands))].index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
