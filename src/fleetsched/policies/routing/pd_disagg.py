"""Prefill/decode disaggregation: a prefill instance first, then a decode instance
(DistServe, OSDI 2024; Splitwise, ISCA 2024).

DistServe (Zhong et al., OSDI 2024) and Splitwise (Patel et al., ISCA 2024) run prefill and
decode on separate instances, so long prompts never stall decodes; the KV cache moves from
the prefill to the decode instance after the first token (as in llm-d's P/D profiles, vLLM's
disaggregated prefill with NIXL/LMCache connectors and Dynamo's disaggregated serving).

* :meth:`PDDisagg.route` picks among ``role == "prefill"`` instances: with
  ``prefill="least"`` the fewest outstanding; with ``prefill="prefix"`` the longest cached
  prefix, then fewest outstanding (asks the runtime for prefix matches).
* :meth:`PDDisagg.pick_decode` picks among ``role == "decode"`` instances: lowest
  ``kv_utilization``, then fewest outstanding.

Remaining ties break at random from the router's seeded generator. If no healthy instance
has the role, ``mixed`` instances are
used, then any healthy instance (availability over purity); unhealthy ones only if nothing
is healthy. The simulator moves the KV cache after prefill.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, pick_min


def _pool(views: Sequence[InstanceView], role: str) -> Sequence[InstanceView]:
    up = [v for v in views if v.healthy]
    if not up:
        return views
    own = [v for v in up if v.role == role]
    if own:
        return own
    mixed = [v for v in up if v.role == "mixed"]
    return mixed if mixed else up


class PDDisagg:
    needs_views = True

    def __init__(self, seed: int = 0, prefill: str = "least") -> None:
        if prefill not in ("least", "prefix"):
            raise InputError(f"pd_disagg: prefill must be 'least' or 'prefix', got {prefill!r}")
        self.prefill = prefill
        self.needs_prefix = prefill == "prefix"
        self._rng = UniformStream(seed)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        pool = _pool(instances, "prefill")
        if self.prefill == "prefix":
            keys = [(-v.cached_prefix_tokens, v.queue_len + v.running) for v in pool]
        else:
            keys = [v.queue_len + v.running for v in pool]
        return pick_min(pool, keys, self._rng).index

    def pick_decode(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        pool = _pool(instances, "decode")
        keys = [(v.kv_utilization, v.queue_len + v.running) for v in pool]
        return pick_min(pool, keys, self._rng).index

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
