"""Aggressive admission (vLLM): start a request whenever its next blocks are free now."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class AggressiveAdmission:
    monotone = True

    def admit(self, seq: Seq, need_blocks: int, engine: Instance) -> bool:
        return need_blocks <= engine.kv.free
