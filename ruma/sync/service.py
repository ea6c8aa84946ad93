"""The sync side of the homeserver as one service: the event bus, the ephemeral handlers
(typing, receipts, presence, account data, filters), the notifier and the sync handler.

``ruma.tap`` builds one ``SyncServices`` and starts it once the schema is ready; other parts
(federation sender, appservices, bridges) subscribe to ``bus``.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.bus import EventBus
from ruma.handlers.account_data import AccountDataHandler
from ruma.handlers.filters import FilterHandler
from ruma.handlers.presence import PresenceHandler
from ruma.handlers.receipts import ReceiptHandler
from ruma.handlers.typing import TypingHandler
from ruma.storage.account_data import AccountDataStore
from ruma.storage.database import Database
from ruma.storage.events import EventStore
from ruma.storage.filters import FilterStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import ReceiptStore
from ruma.storage.sync import SyncStore
from ruma.sync.handler import SyncHandler
from ruma.sync.notifier import SyncNotifier


class SyncServices(Service):
    log = Logger()

    def __init__(
        self, *, clock: IReactorTime, db: Database, events: EventStore, bus: EventBus | None = None
    ) -> None:
        self.clock = clock
        self.db = db
        self.events = events
        self.bus = bus if bus is not None else EventBus(clock, db)
        self.sync_store = SyncStore(db)
        self.receipt_store = ReceiptStore(db)
        self.account_data_store = AccountDataStore(db)
        self.filter_store = FilterStore(db)
        self.presence_store = PresenceStore(db)
        self.typing = TypingHandler(clock, self.sync_store, events)
        self.account_data = AccountDataHandler(self.account_data_store)
        self.receipts = ReceiptHandler(clock, self.receipt_store, events, self.account_data)
        self.presence = PresenceHandler(clock, self.presence_store, events)
        self.filters = FilterHandler(self.filter_store, events.is_local_user)
        self.notifier = SyncNotifier(clock, self.bus, events)
        self.sync = SyncHandler(
            clock,
            self.bus,
            events,
            self.sync_store,
            self.receipt_store,
            self.account_data_store,
            self.typing,
            self.presence,
            self.notifier,
        )
        self._presence_start: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.bus.start()
        self.notifier.start()
        self._presence_start = Deferred.fromCoroutine(self.presence.start())
        self._presence_start.addErrback(lambda f: self.log.failure("starting presence", f))

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.presence.stop()
        self.typing.stop()
        self.notifier.stop()
        self.bus.stop()
