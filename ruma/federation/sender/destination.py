"""One remote server's delivery loop: the shared retrying machine of :mod:`ruma.delivery`
(the one appservices use too) on the federation retry schedule.

Callers send a destination ``wake()`` when something is queued for it, ``peer_is_back()``
when the server has just sent us a request (a destination backing off retries at once), and
``stop()``; a transmit that raises :class:`RetryLater` with the peer's ``retry_after`` waits
at least that long.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruma.backoff import ExponentialBackoff
from ruma.delivery import RetryLater

__all__ = ["Backoff", "RetryLater"]


@dataclass(frozen=True, slots=True)
class Backoff(ExponentialBackoff):
    """The federation retry schedule: 10 s doubling up to an hour, spread by 20% so that
    servers which went down together do not all retry together."""

    initial: float = 10.0
    maximum: float = 3600.0
    jitter: float = 0.2
