"""The routing-policy contract.

A router sees a read-only :class:`RequestView` and one :class:`InstanceView` per instance and
returns the index of the chosen instance. ``needs_views`` says whether it reads load signals
(when False, the runtime passes a static snapshot and saves building views); ``needs_prefix``
asks the runtime to fill ``InstanceView.cached_prefix_tokens`` for the request.

``route`` returns the chosen view's ``index`` field (the list may be a subset).

**Notifications.** A runtime (the simulator or the gateway) sends a router three events per
request, the same way in both: *dispatched* -- ``route`` itself: the runtime sends the
request where ``route`` said, so a router that keeps its own accounting counts it there at
once, before the request reaches the engine; *first token* -- the optional
``on_first_token(req, index)``, when the first output token of a request routed to
``index`` comes back; *finished* -- ``on_finish(req, index)``, on every path out (success,
error, rejection, timeout, client disconnect, handover to another instance). A router's own
accounting (what it sent and has not seen finish) is what lets the same object behave the
same in the simulator and in front of real engines, which expose no internals.

Other optional hooks a runtime looks for with ``getattr``:

* ``pick_decode(req, decode_views) -> index``: the decode instance for a request whose
  prefill finished on a ``prefill`` instance (see ``pd_disagg``);
* ``plan_migrations(views) -> list[(src, dst)]`` and ``migration_interval_s``: live
  migration pairs, asked for every ``migration_interval_s`` seconds (see ``llumnix``);
* ``on_outcome(req, index, outcome)``: after ``on_finish`` of a request that completed, what
  became of it (:class:`~fleetsched.core.views.Outcome`: judged correctness, energy, output
  tokens, latency) -- the partial feedback a learning router trains on (see
  ``green_bandit``). The simulator sends it (its judge and energy meter); the gateway has no
  source of correctness or energy and never calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fleetsched.core.views import InstanceView, RequestView


class RoutingPolicy(Protocol):
    needs_views: bool
    needs_prefix: bool

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        """Return the ``index`` of the chosen instance."""
        ...

    def on_finish(self, req: RequestView, index: int) -> None:
        """The request routed to ``index`` finished (or was rejected)."""
        ...
