"""Routing policies, registered by name.

A policy is one file in this package plus one line in :data:`ROUTERS`. Every factory takes
``(seed: int = 0, **params)``; see ``docs/routing.md``. Exported for policy authors: the
router-side :class:`Ledger`, the seeded :class:`UniformStream` and ``pick_min`` /
``pick_max`` (arg-min/max with ties at random).
"""

from __future__ import annotations

from collections.abc import Callable

from fleetsched.errors import InputError
from fleetsched.policies.params import build_policy
from fleetsched.policies.routing._util import UniformStream, pick_max, pick_min
from fleetsched.policies.routing.base import RoutingPolicy
from fleetsched.policies.routing.cache_aware import CacheAware
from fleetsched.policies.routing.consistent_hash import ConsistentHash
from fleetsched.policies.routing.dualmap import DualMap
from fleetsched.policies.routing.framework import Profile, make_profile
from fleetsched.policies.routing.green_bandit import GreenBandit
from fleetsched.policies.routing.kv_overlap import KVOverlap
from fleetsched.policies.routing.least_kv import LeastKV
from fleetsched.policies.routing.least_requests import LeastRequests
from fleetsched.policies.routing.ledger import Ledger
from fleetsched.policies.routing.llumnix import Llumnix
from fleetsched.policies.routing.pd_disagg import PDDisagg
from fleetsched.policies.routing.power_of_two import PowerOfTwo
from fleetsched.policies.routing.prefix_load import prefix_load, prefix_load_precise
from fleetsched.policies.routing.quality_first import QualityFirst
from fleetsched.policies.routing.random import RandomRouter
from fleetsched.policies.routing.round_robin import RoundRobin
from fleetsched.policies.routing.route_balance import RouteBalance
from fleetsched.policies.routing.session_affinity import SessionAffinity
from fleetsched.policies.routing.workflow_affinity import WorkflowAffinity

#: name -> factory(seed=..., **params)
ROUTERS: dict[str, Callable[..., RoutingPolicy]] = {
    "round_robin": RoundRobin,
    "random": RandomRouter,
    "least_requests": LeastRequests,
    "least_kv": LeastKV,
    "power_of_two": PowerOfTwo,
    "consistent_hash": ConsistentHash,
    "cache_aware": CacheAware,
    "prefix_load": prefix_load,
    "prefix_load_precise": prefix_load_precise,
    "kv_overlap": KVOverlap,
    "dualmap": DualMap,
    "llumnix": Llumnix,
    "session_affinity": SessionAffinity,
    "workflow_affinity": WorkflowAffinity,
    "quality_first": QualityFirst,
    "route_balance": RouteBalance,
    "green_bandit": GreenBandit,
    "pd_disagg": PDDisagg,
    "profile": make_profile,
}


def make_router(
    name: str, params: dict | None = None, seed: int = 0, context: dict | None = None
) -> RoutingPolicy:
    """The router registered as ``name``, its ``params`` checked against the factory's
    signature (:mod:`fleetsched.policies.params`). ``context`` holds runtime arguments a
    factory may take (``quality``: the scenario's quality table)."""
    try:
        factory = ROUTERS[name]
    except KeyError:
        known = ", ".join(sorted(ROUTERS))
        raise InputError(f"unknown router {name!r} (known: {known})") from None
    return build_policy(factory, "router", name, params or {}, {**(context or {}), "seed": seed})


__all__ = [
    "ROUTERS",
    "Ledger",
    "Profile",
    "RoutingPolicy",
    "UniformStream",
    "make_router",
    "pick_max",
    "pick_min",
]
