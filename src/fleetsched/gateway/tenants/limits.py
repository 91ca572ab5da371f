"""Per-tenant rate limits: token buckets for requests and for tokens.

A bucket holds up to ``burst`` units and refills at ``rate`` per second. A request needs one
unit of the request bucket, and the token bucket not to be in debt: prompt tokens are charged
when the request is admitted and output tokens when they are reported (the usage of the
answer, or its chunks), so a long answer can put the bucket in debt and delay the tenant's
next request, as the Envoy AI Gateway's and LiteLLM's token limits do. A refusal is a 429 with
``Retry-After``: the whole seconds until the bucket allows the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetsched.api.errors import APIError


@dataclass(slots=True)
class Bucket:
    rate: float
    burst: float
    level: float
    t: float

    def refill(self, now: float) -> float:
        if now > self.t:
            self.level = min(self.burst, self.level + (now - self.t) * self.rate)
            self.t = now
        return self.level

    def wait_s(self, need: float) -> float:
        """Seconds until ``need`` units are there (0: now)."""
        short = need - self.level
        return 0.0 if short <= 0 else short / self.rate


def rate_limited(tenant: str, what: str, wait_s: float) -> APIError:
    secs = max(1, math.ceil(wait_s))
    return APIError(
        429,
        f"rate limit of tenant {tenant!r} reached ({what}); retry in {secs} s",
        None,
        "rate_limit_exceeded",
        {"retry-after": str(secs)},
    )


class TenantLimits:
    """The request and token buckets of one tenant (either may be absent)."""

    __slots__ = ("requests", "tokens")

    def __init__(
        self,
        requests_per_s: float | None,
        request_burst: float | None,
        tokens_per_s: float | None,
        token_burst: float | None,
        now: float,
    ) -> None:
        self.requests = self.tokens = None
        if requests_per_s is not None:
            burst = request_burst if request_burst is not None else max(requests_per_s, 1.0)
            self.requests = Bucket(requests_per_s, burst, burst, now)
        if tokens_per_s is not None:
            burst = token_burst if token_burst is not None else max(10 * tokens_per_s, 1.0)
            self.tokens = Bucket(tokens_per_s, burst, burst, now)

    def admit(self, tenant: str, prompt_tokens: int, now: float) -> None:
        """Take one request and its prompt tokens, or raise the 429."""
        r, t = self.requests, self.tokens
        if r is not None:
            r.refill(now)
            if r.level < 1.0:
                raise rate_limited(tenant, f"{r.rate:g} requests/s", r.wait_s(1.0))
        if t is not None:
            t.refill(now)
            if t.level < 0.0 or (prompt_tokens > t.level and t.level < t.burst):
                raise rate_limited(
                    tenant, f"{t.rate:g} tokens/s", t.wait_s(min(prompt_tokens, t.burst))
                )
            t.level -= prompt_tokens
        if r is not None:
            r.level -= 1.0

    def charge(self, tokens: int, now: float) -> None:
        """Output tokens of an answer (may put the token bucket in debt)."""
        t = self.tokens
        if t is not None and tokens > 0:
            t.refill(now)
            t.level -= tokens


__all__ = ["Bucket", "TenantLimits", "rate_limited"]
