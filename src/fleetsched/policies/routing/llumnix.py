"""Llumnix: dispatch to the instance with the most room per request; pair loaded instances
with free ones for live migration (Sun et al., OSDI 2024; AlibabaPAI/llumnix).

Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving" (OSDI 2024), as
AlibabaPAI/llumnix runs it today (commit 24220fb8, Aug 2025: ``llumnix/load_computation.py``
``RemainingStepsLoad``, ``global_scheduler/dispatch_policy.py`` ``Load``,
``global_scheduler/migration_filter.py`` ``LoadFilter``, ``migration_policy.py`` ``Defrag``,
defaults from ``config/default.py``). The load metric of both dispatch and migration is
``remaining_steps`` (the paper's freeness)::

    remaining_steps = (free_blocks - blocks_of_all_waiting_requests) / (running + waiting)

(infinite for an idle instance): how many decode steps' worth of KV each request has left.

* **Dispatch** (``dispatch_policy="load"``, ``topk_random_dispatch=1``): the highest
  remaining steps wins, ties at random (Llumnix takes the lowest instance id). Its busy filter
  (remaining steps below ``LLUMNIX_REMAININGSTEPS_BUSY_THRESHOLD`` = 0, unless all are busy)
  cannot change a top-1 pick and is not repeated here.
* **Migration** (``plan_migrations``, every ``migration_interval_s`` = the manager's 0.05 s
  polling interval x ``pair_migration_frequency`` 1): *sources* are instances with
  remaining steps <= ``migrate_out_threshold`` (-3) or with preempted requests; *destinations*
  have remaining steps >= the threshold and no preempted requests. ``defrag`` pairing: the
  most loaded source with the least loaded destination, and so on down both lists. Llumnix
  ships with routine migration off (``ENABLE_ROUTINE_MIGRATION = False``); migration is
  what this router is for, so it is on here (``migrate=False`` keeps only the dispatch).

Where the numbers come from, as a gateway can know them: ``running``, ``queue_len`` (waiting)
and ``free_blocks`` from the views (scraped engine metrics); the blocks of waiting requests
from the router's own ledger -- the prompt tokens of requests it sent there whose first
token has not come back, over the block size (Llumnix's llumlet sums ``prompt_len /
block_size`` over the engine's waiting queue; the ledger also counts a request whose
chunked prefill is under way, whose allocated part is then counted twice); "has preempted
requests" from ``InstanceView.preemptions`` growing since the previous plan (the llumlet
counts preempted requests still waiting; a gateway sees vLLM's ``num_preemptions_total``
counter). A source must have a running request to move (Llumnix pairs it anyway and finds
nothing to migrate), and a pair never has one instance on both sides. The paper's priority
headroom is not in the current code and is not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, healthy, pick_max
from fleetsched.policies.routing.ledger import Ledger


class Llumnix:
    needs_views = True
    needs_prefix = False
    #: How often the runtime should call :meth:`plan_migrations` (seconds).
    migration_interval_s: float = 0.05

    def __init__(
        self,
        seed: int = 0,
        migrate_out_threshold: float = -3.0,
        migration_interval_s: float = 0.05,
        block_tokens: int = BLOCK_TOKENS,
        migrate: bool = True,
    ) -> None:
        if migration_interval_s <= 0 or block_tokens < 1:
            raise InputError("llumnix: migration_interval_s must be > 0 and block_tokens >= 1")
        self.migrate_out_threshold = migrate_out_threshold
        self.migration_interval_s = migration_interval_s
        self.block_tokens = block_tokens
        self.migrate = migrate
        self.ledger = Ledger()
        self._rng = UniformStream(seed)
        self._preemptions: dict[int, int] = {}  # index -> counter at the previous plan

    def remaining_steps(self, v: InstanceView) -> float:
        """Llumnix's ``RemainingStepsLoad`` of instance ``v`` (higher = less loaded)."""
        n = v.running + v.queue_len
        if n == 0:
            return math.inf
        led = self.ledger.unprefilled_tokens
        waiting = led[v.index] / self.block_tokens if v.index < len(led) else 0.0
        return (v.free_blocks - waiting) / n

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        top = max(v.index for v in cands) + 1
        if top > len(self.ledger.requests):
            self.ledger.grow(top)
        steps = [self.remaining_steps(v) for v in cands]
        best = pick_max(cands, steps, self._rng).index
        self.ledger.dispatch(req, best)
        return best

    def on_first_token(self, req: RequestView, index: int) -> None:
        self.ledger.first_token(req)

    def on_finish(self, req: RequestView, index: int) -> None:
        self.ledger.finish(req)

    def plan_migrations(self, views: Sequence[InstanceView]) -> list[tuple[int, int]]:
        """``(src, dst)`` instance-index pairs to migrate one running request each."""
        if not self.migrate:
            return []
        up = [v for v in views if v.healthy]
        top = max((v.index for v in up), default=-1) + 1
        if top > len(self.ledger.requests):
            self.ledger.grow(top)
        seen = self._preemptions
        th = self.migrate_out_threshold
        src, dst = [], []
        for v in up:
            preempted = v.preemptions > seen.get(v.index, v.preemptions)
            seen[v.index] = v.preemptions
            s = self.remaining_steps(v)
            key = (s, self._rng.random())  # random order among equal loads
            if v.running > 0 and (preempted or s <= th):
                src.append((key, v.index))
            if not preempted and s >= th:
                dst.append((key, v.index))
        src.sort()  # most loaded (fewest remaining steps) first
        dst.sort(reverse=True)  # least loaded first
        return [(s, d) for (_, s), (_, d) in zip(src, dst, strict=False) if s != d]
