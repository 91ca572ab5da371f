"""What marks a best-effort batch job (shared by the co-location policies)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetsched.engine.sequence import Seq


def is_batch(seq: Seq, batch_class: str) -> bool:
    """A request is a batch job when its SLO class is ``batch_class`` (default ``"batch"``)."""
    return seq.req.slo_class == batch_class
