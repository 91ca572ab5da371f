"""Shared test helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.perf.profile import FittedProfile

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"
PROFILES = REPO.parent / "shared" / "profiles"


@pytest.fixture(scope="session")
def traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"public traces not found at {TRACES}")
    return TRACES


@pytest.fixture(scope="session")
def profiles() -> Path:
    if not (PROFILES / "vidur").is_dir():
        pytest.skip(f"public GPU profiles not found at {PROFILES}")
    return PROFILES


CliResult = tuple[int, str, str]


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Run ``fleetsched *args`` in-process through its entry point (as the console script
    does) with the output piped and ``COLUMNS`` set; return (exit code, stdout, stderr)."""
    from fleetsched.cli.app import main

    def run(*args: str, columns: int = 80) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["fleetsched", *args])
        monkeypatch.setenv("COLUMNS", str(columns))
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def RV(i: int, **kw: object) -> RequestView:
    """A request view of an anonymous 16-token request, ``kw`` overriding any field (for
    routing tests)."""
    d: dict[str, object] = dict(
        id=i,
        prompt_tokens=16,
        block_hashes=(),
        hash_block_tokens=16,
        tenant="default",
        priority=0,
        session_id=None,
        slo_class="default",
        model=None,
        deadline_s=None,
    )
    d.update(kw)
    return RequestView(**d)  # type: ignore[arg-type]


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


#: Fitted step profiles the engine tests share: a fixed 4 ms step with costly decodes (KV
#: pressure and context-switch tests) and a fixed 5 ms step with cheaper ones.
PROF_4MS = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.004,
    prefill_token_s=1e-5,
    prefill_pair_s=2e-10,
    decode_token_s=2e-4,
    decode_ctx_token_s=5e-8,
)
PROF_5MS = FittedProfile(
    model="m",
    gpu="g",
    c0_s=0.005,
    prefill_token_s=2e-5,
    prefill_pair_s=1e-9,
    decode_token_s=1e-4,
    decode_ctx_token_s=3e-8,
)
