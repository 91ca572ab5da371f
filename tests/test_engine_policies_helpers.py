"""Shared helpers of the engine-policy tests (this module holds no tests itself)."""

from __future__ import annotations

from tests.conftest import PROF_5MS

from fleetsched.core.config import EngineConfig
from fleetsched.core.request import Request
from fleetsched.engine.instance import Instance
from fleetsched.engine.sequence import Seq
from fleetsched.metrics.records import RequestRecord
from fleetsched.policies.routing import make_router
from fleetsched.sim.kernel import Simulator, new_record

# The profile of test_engine_analytic: a 100-token prefill takes ~7 ms, a decode step ~5.1 ms.
PROF = PROF_5MS


def run(
    reqs: list[Request],
    *,
    blocks: int = 10_000,
    ordering=None,
    admission=None,
    preemption=None,
    ff: bool = True,
    **engine,
) -> tuple[list[RequestRecord], Instance]:
    """Run ``reqs`` through one real engine (KV invariants checked after every event)."""
    inst = Instance(
        0,
        blocks,
        PROF,
        EngineConfig(**engine),
        ordering=ordering,
        admission=admission,
        preemption=preemption,
        fast_forward=ff,
    )
    recs = Simulator([inst], make_router("round_robin")).run(reqs, check=True)
    return recs, inst


def seq(req: Request) -> Seq:
    """A waiting engine sequence for ``req`` (as the engine enqueues it)."""
    s = Seq(req, new_record(req))
    s.target = req.prompt_tokens
    return s


def start_order(recs: list[RequestRecord]) -> list[int]:
    """Request ids in the order they were first scheduled."""
    return [r.id for r in sorted(recs, key=lambda r: (r.first_scheduled_s, r.id))]


def all_done(recs: list[RequestRecord]) -> bool:
    return all(r.finished and r.generated_tokens == r.output_tokens for r in recs)
