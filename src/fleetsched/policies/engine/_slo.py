"""Deadlines of requests from their SLO class (shared by ``edf`` and ``most_slack``).

A request's first token is due at ``deadline_s`` when the request carries one, else at
``arrival_s + ttft_s`` of its SLO class. After the first token, the SLO paces the rest: token
``g + 1`` is due ``tpot_s * g`` after the first-token deadline. An SLO class missing from the
scenario falls back to the ``default`` class, then to :class:`SLOClass` defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetsched.core.config import SLOClass

if TYPE_CHECKING:
    from fleetsched.core.request import Request


class Deadlines:
    def __init__(self, slo_classes: Mapping[str, Any] | None) -> None:
        self._classes: dict[str, tuple[float, float]] = {}
        for name, c in (slo_classes or {}).items():
            if isinstance(c, Mapping):
                c = SLOClass(**c)
            self._classes[name] = (float(c.ttft_s), float(c.tpot_s))
        d = SLOClass()
        self._default = self._classes.get("default", (d.ttft_s, d.tpot_s))

    def targets(self, req: Request) -> tuple[float, float]:
        """(ttft_s, tpot_s) of the request's SLO class."""
        return self._classes.get(req.slo_class, self._default)

    def next_token(self, req: Request, generated: int) -> float:
        """When the request's next token (after ``generated`` ones) is due."""
        ttft, tpot = self.targets(req)
        first = req.deadline_s if req.deadline_s is not None else req.arrival_s + ttft
        return first + tpot * generated
