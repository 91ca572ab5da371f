"""Admit online requests as vLLM does; admit batch jobs only below a KV-use ceiling.

The headroom (``1 - batch_kv_limit`` of the KV cache) is kept for online bursts, so batch
jobs fill idle capacity without making online requests wait for memory (xLLM-style
co-location; see ``colocate_order``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetsched.errors import InputError
from fleetsched.policies.engine._batch import is_batch

if TYPE_CHECKING:
    from fleetsched.engine.instance import Instance
    from fleetsched.engine.sequence import Seq


class ColocateAdmission:
    monotone = True

    def __init__(self, batch_class: str = "batch", batch_kv_limit: float = 0.7) -> None:
        if not 0 < batch_kv_limit <= 1:
            raise InputError(f"batch_kv_limit must be in (0, 1], not {batch_kv_limit!r}")
        self.batch_class = batch_class
        self.limit = batch_kv_limit

    def admit(self, seq: Seq, need_blocks: int, engine: Instance) -> bool:
        kv = engine.kv
        if need_blocks > kv.free:
            return False
        if not is_batch(seq, self.batch_class):
            return True
        return kv.used + need_blocks <= self.limit * kv.num_blocks
