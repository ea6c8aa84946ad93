"""Forgetting old inbound transaction IDs.

A sender retries a transaction only until it is answered, and then moves on; a week is
far beyond any retry, so older answers are dropped once a day.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ruma.storage.federation import FederationInboundStore

__all__ = ["TransactionPruner"]

KEEP_MS = 7 * 24 * 3600 * 1000
INTERVAL_S = 24 * 3600.0


class TransactionPruner(Service):
    log = Logger()

    def __init__(self, clock: IReactorTime, store: FederationInboundStore) -> None:
        self._clock = clock
        self._store = store
        self._loop = LoopingCall(self._prune_now)
        self._loop.clock = clock
        self._running: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._loop.start(INTERVAL_S, now=True)

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            self._loop.stop()
        running, self._running = self._running, None
        if running is not None and not running.called:
            running.cancel()
        return None

    def _prune_now(self) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(self._prune_logged())
        d.addErrback(lambda f: self.log.failure("pruning inbound transactions", f))
        self._running = d
        return d

    async def _prune_logged(self) -> None:
        await self.prune()

    async def prune(self) -> int:
        cutoff = int(self._clock.seconds() * 1000) - KEEP_MS
        n = await self._store.prune_txns(cutoff)
        if n:
            self.log.info("forgot {n} inbound transactions older than a week", n=n)
        return n
