"""How long a retrying delivery waits: exponential backoff with jitter.

The federation destinations (:mod:`ruma.federation.sender.destination`) and the appservice
deliveries (:mod:`ruma.appservice.scheduler`) both retry a peer that failed after a delay
that doubles with each failure up to a cap. The delay is spread by a random factor so that
peers which failed together (a network outage, a restart) are not all retried in the same
instant. The randomness is injected, so tests fix it; the machines schedule the delay on
their injected clock.

Each user subclasses :class:`ExponentialBackoff` with its own defaults (``Backoff`` in the
two modules above), so callers and configuration keep one name per schedule.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ExponentialBackoff"]

# 2**64 already overflows any sensible cap; a larger exponent would overflow the float.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Delay before retry number ``failures`` (1 for the first retry):
    ``initial * factor**(failures - 1)`` capped at ``maximum``, times a random factor in
    ``[1 - jitter, 1 + jitter]`` drawn from ``random`` (a callable answering in [0, 1))."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"backoff needs 0 < initial <= maximum, not {self}")
        if self.factor < 1.0:
            raise ValueError(f"backoff factor must be at least 1, not {self.factor}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"backoff jitter must be in [0, 1), not {self.jitter}")

    def nominal(self, failures: int) -> float:
        """The delay without jitter; a count below 1 counts as the first failure."""
        exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
        return min(self.maximum, self.initial * self.factor**exponent)

    def delay(self, failures: int, at_least: float | None = None) -> float:
        """The delay with jitter, in seconds; never below ``at_least`` (a peer's own
        Retry-After, say), which may exceed ``maximum``."""
        spread = 1.0 + self.jitter * (2.0 * self.random() - 1.0)
        delay = self.nominal(failures) * spread
        return delay if at_least is None else max(delay, at_least)
