"""Routing policies, registered by name."""

from __future__ import annotations

from collections.abc import Callable

from fleetsched.errors import InputError
from fleetsched.policies.routing.base import RoutingPolicy
from fleetsched.policies.routing.round_robin import RoundRobin

#: name -> factory(seed=..., **params)
ROUTERS: dict[str, Callable[..., RoutingPolicy]] = {
    "round_robin": RoundRobin,
}


def make_router(name: str, params: dict | None = None, seed: int = 0) -> RoutingPolicy:
    try:
        factory = ROUTERS[name]
    except KeyError:
        known = ", ".join(sorted(ROUTERS))
        raise InputError(f"unknown router {name!r} (known: {known})") from None
    try:
        return factory(seed=seed, **(params or {}))
    except TypeError as e:
        raise InputError(f"bad parameters for router {name!r}: {e}") from None


__all__ = ["ROUTERS", "RoutingPolicy", "make_router"]
