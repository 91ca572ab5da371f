"""Preempt the most recently admitted running request (vLLM's choice)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


class NewestVictim:
    def victim(self, running: list[Seq]) -> Seq:
        return running[-1]
