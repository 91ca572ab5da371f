"""Consistent hashing on the prompt prefix or the session, with bounded loads (Karger et al.,
STOC 1997; Mirrokni et al., SODA 2018).

Karger et al., "Consistent Hashing and Random Trees" (STOC 1997): each instance owns
``vnodes`` pseudo-random points of a 64-bit ring; a request goes to the owner of the first
point clockwise from its key. When an instance leaves, only its keys move (to the next points
clockwise); the others stay, so their prefix caches stay warm.

Bounded loads, Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads"
(SODA 2018; the variant in HAProxy and Envoy's ring hash): with load factor ``c`` every
instance takes at most ``ceil(c * (m + 1) / n)`` of the ``m`` outstanding requests plus this
one; a full instance is skipped and the walk goes on clockwise. ``load_factor=None`` turns it
off (plain consistent hashing).

Parameters: ``key`` = ``"prefix"`` or ``"session"`` (session id; requests without one fall
back to the prefix), ``vnodes`` (points per instance, 160 as in ketama), ``load_factor``
(c >= 1, default 1.25, or None). The prefix key (:mod:`.prefix_key`) is adaptive by default:
it covers what many prompts share (a system prompt) plus the first block of the request's
own content, so a shared system prompt does not send every request to one owner;
``key_tokens=N`` keys on the first N tokens instead (stateless: gateway replicas agree
without sharing state). SGLang's ``prefix_hash`` policy keys on the first 256 tokens; with
a longer shared system prompt that is one key for everything, which is why it is not the
default here. Among instances below the load bound the first clockwise wins; the fallback
when all are full (unreachable for c >= 1) takes the least loaded, ties at random.

Ring points come from blake2b of the instance *name*, so the ring is the same in every
process and an instance keeps its points when others come and go.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator, Sequence

from fleetsched.core.views import InstanceView, RequestView
from fleetsched.errors import InputError
from fleetsched.policies.routing._util import UniformStream, least_outstanding, str_hash64
from fleetsched.policies.routing.prefix_key import PrefixKey


class HashRing:
    """A ring of ``vnodes`` points per member; ``walk(key)`` yields member positions
    clockwise from ``key``, each once."""

    __slots__ = ("n", "owners", "points")

    def __init__(self, members: Sequence[str], vnodes: int = 160, salt: str = "") -> None:
        pts = sorted(
            (str_hash64(f"{salt}|{name}|{r}"), pos)
            for pos, name in enumerate(members)
            for r in range(vnodes)
        )
        self.points = [p for p, _ in pts]
        self.owners = [o for _, o in pts]
        self.n = len(members)

    def first(self, key: int) -> int:
        i = bisect_right(self.points, key)
        return self.owners[i if i < len(self.owners) else 0]

    def walk(self, key: int) -> Iterator[int]:
        owners = self.owners
        m = len(owners)
        i = bisect_right(self.points, key)
        seen: set[int] = set()
        for k in range(m):
            o = owners[(i + k) % m]
            if o not in seen:
                seen.add(o)
                yield o
                if len(seen) == self.n:
                    return


def member_ids(views: Sequence[InstanceView]) -> tuple[str, ...]:
    """Ring identities: instance names, or indices when names are not unique."""
    ids = tuple(v.name for v in views)
    if len(set(ids)) != len(ids):
        ids = tuple(f"#{v.index}" for v in views)
    return ids


class RingCache:
    """The ring for the current membership; rebuilt only when membership changes."""

    def __init__(self, vnodes: int, salt: str) -> None:
        self.vnodes = vnodes
        self.salt = salt
        self._names: tuple[str, ...] = ()
        self._unique = True
        #: Member ids of the current ring, by position in the views.
        self.ids: tuple[str, ...] = ()
        self._pos: dict[str, int] | None = None
        self._ring: HashRing | None = None

    def get(self, views: Sequence[InstanceView]) -> HashRing:
        names = tuple([v.name for v in views])
        if names != self._names or self._ring is None or not self._unique:
            self._names = names
            self._unique = len(set(names)) == len(names)
            ids = names if self._unique else member_ids(views)
            if ids != self.ids or self._ring is None:
                self._ring = HashRing(ids, self.vnodes, self.salt)
                self.ids = ids
                self._pos = None
        return self._ring

    def position(self, member: str) -> int | None:
        """Position of ``member`` in the views of the last :meth:`get` (None if absent)."""
        if self._pos is None:
            self._pos = {m: i for i, m in enumerate(self.ids)}
        return self._pos.get(member)


class ConsistentHash:
    needs_prefix = False

    def __init__(
        self,
        seed: int = 0,
        key: str = "prefix",
        vnodes: int = 160,
        load_factor: float | None = 1.25,
        key_tokens: int | None = None,
    ) -> None:
        if key not in ("prefix", "session"):
            raise InputError(f"consistent_hash: key must be 'prefix' or 'session', got {key!r}")
        if load_factor is not None and load_factor < 1.0:
            raise InputError(f"consistent_hash: load_factor must be >= 1, got {load_factor}")
        if vnodes < 1:
            raise InputError("consistent_hash: vnodes must be >= 1")
        self.key = key
        self.load_factor = load_factor
        self.prefix_key = PrefixKey(key_tokens)
        self.needs_views = load_factor is not None
        self._rings = RingCache(vnodes, f"ch{seed}")
        self._rng = UniformStream(seed)

    def key_of(self, req: RequestView) -> int:
        if self.key == "session" and req.session_id is not None:
            return str_hash64(req.session_id)
        return self.prefix_key(req)

    def route(self, req: RequestView, instances: Sequence[InstanceView]) -> int:
        ring = self._rings.get(instances)
        k = self.key_of(req)
        c = self.load_factor
        if c is None:
            for pos in ring.walk(k):
                if instances[pos].healthy:
                    return instances[pos].index
            return instances[ring.first(k)].index
        up = [v for v in instances if v.healthy]
        any_healthy = bool(up)
        cands = up if up else instances
        total = sum(v.queue_len + v.running for v in cands)
        cap = math.ceil(c * (total + 1) / len(cands))
        for pos in ring.walk(k):
            v = instances[pos]
            if (v.healthy or not any_healthy) and v.queue_len + v.running < cap:
                return v.index
        return least_outstanding(cands, self._rng).index  # unreachable for c >= 1

    def on_finish(self, req: RequestView, index: int) -> None:
        pass
