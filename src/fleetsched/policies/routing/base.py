"""The routing-policy contract.

A router sees a read-only :class:`RequestView` and one :class:`InstanceView` per instance and
returns the index of the chosen instance. ``needs_views`` says whether it reads load signals
(when False, the runtime passes a static snapshot and saves building views); ``needs_prefix``
asks the runtime to fill ``InstanceView.cached_prefix_tokens`` for the request.

``route`` returns the chosen view's ``index`` field (the list may be a subset). Optional
hooks a runtime looks for with ``getattr``:

* ``pick_decode(req, decode_views) -> index``: the decode instance for a request whose
  prefill finished on a ``prefill`` instance (see ``pd_disagg``);
* ``plan_migrations(views) -> list[(src, dst)]`` and ``migration_interval_s``: live
  migration pairs, asked for every ``migration_interval_s`` seconds (see ``llumnix``).
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
