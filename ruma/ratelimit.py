"""Token-bucket rate limiting keyed by whatever the caller chooses (user ID, IP address)."""

from __future__ import annotations

import math

from twisted.internet.interfaces import IReactorTime

from ruma.errors import limit_exceeded

# Buckets that have refilled completely carry no information; prune them when the table
# grows past this many keys so a flood of distinct keys cannot grow memory without bound.
_PRUNE_AT = 10_000


class Ratelimiter:
    """``burst_count`` actions at once, refilling at ``per_second`` actions per second."""

    def __init__(self, clock: IReactorTime, per_second: float, burst_count: float) -> None:
        if per_second <= 0 or burst_count < 1:
            raise ValueError("per_second must be > 0 and burst_count >= 1")
        self._clock = clock
        self.per_second = per_second
        self.burst_count = burst_count
        # key -> (tokens available, time they were last computed)
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.burst_count, now))
        return min(self.burst_count, tokens + (now - then) * self.per_second)

    def can_do(self, key: str, cost: float = 1.0) -> bool:
        """Whether ``check(key, cost)`` would pass, without spending anything."""
        return self._tokens(key, self._clock.seconds()) >= cost

    def check(self, key: str, cost: float = 1.0, *, update: bool = True) -> None:
        """Spend ``cost`` from ``key``'s bucket or raise 429 ``M_LIMIT_EXCEEDED``.

        With ``update=False`` nothing is spent (for limits that only count failures, such
        as failed logins: check first, :meth:`record` when the attempt fails).
        """
        now = self._clock.seconds()
        tokens = self._tokens(key, now)
        if tokens < cost:
            wait = (cost - tokens) / self.per_second
            raise limit_exceeded(max(1, math.ceil(wait * 1000)))
        if update:
            self._store(key, tokens - cost, now)

    def record(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` unconditionally (the bucket may go negative)."""
        now = self._clock.seconds()
        self._store(key, self._tokens(key, now) - cost, now)

    def reset(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst_count]
        for k in full:
            del self._buckets[k]
