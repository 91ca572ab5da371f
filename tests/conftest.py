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


def V(i: int, **kw: object) -> InstanceView:
    """An idle, healthy instance view with ``kw`` overriding any field (for routing tests)."""
    d: dict[str, object] = dict(
        index=i,
        name=f"inst-{i}",
        model="m",
        gpu="H100",
        role="mixed",
        healthy=True,
        queue_len=0,
        running=0,
        kv_utilization=0.0,
        free_blocks=1000,
        total_blocks=1000,
        inflight_tokens=0,
        cached_prefix_tokens=0,
    )
    d.update(kw)
    return InstanceView(**d)  # type: ignore[arg-type]


class ToFirst:
    """A router for tests: every request goes to instance 0."""

    needs_views = False
    needs_prefix = False

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        return 0

    def on_finish(self, req: RequestView, index: int) -> None:
        pass


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
