"""Request rate limit (TESSEL_RATE_LIMIT): a token bucket per access key and operation.

AHI throttles each account with a rate and a burst per operation; tessel, which
one organisation runs for itself, has one optional rate for every (access key,
operation), so that one busy script cannot starve the others. A request over the
limit is answered with ThrottlingException (429), which the AWS SDKs retry with
back-off.
"""

from __future__ import annotations

import time

from tessel.errors import Unavailable


class Throttled(Unavailable):
    """The access key sent more requests than its rate allows."""


class RateLimiter:
    """`rate` requests per second per bucket on average, `burst` (default 2 x rate) at once.

    Used from the event loop only, so it needs no lock.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, at)

    def take(self, key: str, operation: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        bucket = f"{key} {operation}"
        tokens, at = self._buckets.get(bucket, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[bucket] = (tokens, now)
            wait = (1 - tokens) / self.rate
            raise Throttled(f"Rate exceeded for {operation}: at most {self.rate:g} per second per access key "
                            f"(bursts of {self.burst:g}), and {key} sent more; retry in {wait:.2f} s")
        if len(self._buckets) > 10_000:  # keys that stopped calling: forget them (they refill anyway)
            self._buckets.clear()
        self._buckets[bucket] = (tokens - 1, now)
