"""Shared test helpers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from fleetsched.core.views import InstanceView, RequestView

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"


@pytest.fixture(scope="session")
def traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"public traces not found at {TRACES}")
    return TRACES


class LeastKV:
    """A view-reading router for tests: lowest KV use, then fewest outstanding, then index."""

    needs_views = True
    needs_prefix = True

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        best = min(
            instances,
            key=lambda v: (
                v.kv_utilization - v.cached_prefix_tokens * 1e-6,
                v.outstanding,
                v.index,
            ),
        )
        return best.index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
