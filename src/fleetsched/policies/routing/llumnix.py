"""Llumnix: dispatch to the freest instance; pair overloaded with free ones for migration
(Sun et al., OSDI 2024).

Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving" (OSDI 2024).
Each instance reports its *freeness* ``F = (M - sum V) / B``: free KV memory ``M`` minus the
*virtual usage* ``V`` of its requests, per request of the running batch ``B``. Virtual usage
counts memory not yet allocated but already promised, so that load balancing, queue
pressure and priorities become one number. New requests are dispatched to the instance
with the highest freeness; periodically, instances whose freeness falls below a threshold
migrate running requests (with their KV cache, live) to instances above another threshold.

Here, in KV blocks per running request::

    freeness = (free_blocks - queued_blocks - priority_headroom_blocks * high_priority)
               / max(running, 1)

* ``queued_blocks`` is the virtual usage of queued requests: ``queue_len`` times the mean
  prompt blocks of the requests this router has sent to the instance and that have not
  finished (the views carry no per-request prompt sizes; see the report).
* ``high_priority`` counts outstanding requests with ``priority >= high_priority`` routed to
  the instance: Llumnix reserves headroom on instances running high-priority requests so
  they stay lightly loaded.

:meth:`Llumnix.plan_migrations` returns ``(src, dst)`` pairs: healthy instances with running
requests and freeness below ``migrate_out_threshold`` (most loaded first) paired with
instances above ``migrate_in_threshold`` (freest first). The simulator calls it every
``migration_interval_s`` seconds and performs the migration (the router only decides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fleetsched.core.request import BLOCK_TOKENS
from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import healthy


class Llumnix:
    needs_views = True
    needs_prefix = False
    #: How often the runtime should call :meth:`plan_migrations` (seconds).
    migration_interval_s: float = 0.1

    def __init__(
        self,
        seed: int = 0,
        migrate_out_threshold: float = 1.0,
        migrate_in_threshold: float = 16.0,
        migration_interval_s: float = 0.1,
        priority_headroom_blocks: float = 64.0,
        high_priority: int = 1,
        block_tokens: int = BLOCK_TOKENS,
    ) -> None:
        if migrate_in_threshold < migrate_out_threshold:
            raise InputError("llumnix: migrate_in_threshold must be >= migrate_out_threshold")
        if migration_interval_s <= 0 or block_tokens < 1:
            raise InputError("llumnix: migration_interval_s and block_tokens must be > 0")
        self.migrate_out_threshold = migrate_out_threshold
        self.migrate_in_threshold = migrate_in_threshold
        self.migration_interval_s = migration_interval_s
        self.priority_headroom_blocks = priority_headroom_blocks
        self.high_priority = high_priority
        self.block_tokens = block_tokens
        # Router-side accounting of what was sent where and has not finished, by index.
        self._count: list[int] = []
        self._prompt_blocks: list[int] = []
        self._high: list[int] = []

    def _blocks(self, req: RequestView) -> int:
        return -(-req.prompt_tokens // self.block_tokens)

    def _grow(self, n: int) -> None:
        k = n - len(self._count)
        if k > 0:
            self._count.extend([0] * k)
            self._prompt_blocks.extend([0] * k)
            self._high.extend([0] * k)

    def freeness(self, v: InstanceView) -> float:
        i = v.index
        self._grow(i + 1)
        n = self._count[i]
        virtual = v.queue_len * self._prompt_blocks[i] / n if n else 0.0
        virtual += self.priority_headroom_blocks * self._high[i]
        return (v.free_blocks - virtual) / (v.running or 1)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        cands = healthy(instances)
        top = max(v.index for v in cands) + 1
        if top > len(self._count):
            self._grow(top)
        cnt, pb, high = self._count, self._prompt_blocks, self._high
        hr = self.priority_headroom_blocks
        best = cands[0]
        bf = -math.inf
        for v in cands:
            i = v.index
            n = cnt[i]
            virtual = v.queue_len * pb[i] / n if n else 0.0
            if high[i]:
                virtual += hr * high[i]
            f = (v.free_blocks - virtual) / (v.running or 1)
            if f > bf or (f == bf and i < best.index):
                best, bf = v, f
        b = best.index
        cnt[b] += 1
        pb[b] += self._blocks(req)
        if req.priority >= self.high_priority:
            high[b] += 1
        return b

    def on_finish(self, req: RequestView, index: int) -> None:
        if index >= len(self._count) or self._count[index] <= 0:
            return
        self._count[index] -= 1
        self._prompt_blocks[index] = max(self._prompt_blocks[index] - self._blocks(req), 0)
        if req.priority >= self.high_priority and self._high[index] > 0:
            self._high[index] -= 1

    def plan_migrations(self, views: Sequence[InstanceView]) -> list[tuple[int, int]]:
        """``(src, dst)`` instance-index pairs to migrate one running request each."""
        up = [v for v in views if v.healthy]
        scored = [(self.freeness(v), v) for v in up]
        out_ = sorted(
            ((f, v.index) for f, v in scored if v.running > 0 and f < self.migrate_out_threshold),
        )
        in_ = sorted(
            ((-f, v.index) for f, v in scored if f > self.migrate_in_threshold),
        )
        return [(s, d) for (_, s), (_, d) in zip(out_, in_, strict=False)]
