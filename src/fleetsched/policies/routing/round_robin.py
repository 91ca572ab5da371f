"""Round robin: instance i, i+1, ... in turn (the classic baseline; load-oblivious)."""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView


class RoundRobin:
    needs_views = False
    needs_prefix = False

    def __init__(self, seed: int = 0) -> None:
        self._next = 0

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        i = self._next % len(instances)
        self._next = i + 1
        return instances[i].index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
