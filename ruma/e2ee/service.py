"""End-to-end encryption's object graph, built once for ``ruma.tap``."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from ruma.bus import StreamRow
from ruma.e2ee.backup import KeyBackups
from ruma.e2ee.device_lists import DeviceLists
from ruma.e2ee.keys import E2EKeys
from ruma.e2ee.remote import InboundDeviceEdus, RemoteKeyQuerier
from ruma.e2ee.sync import E2EESync
from ruma.e2ee.to_device import ToDevice
from ruma.storage.database import Database
from ruma.storage.e2ee import DEVICE_LIST_STREAM, E2EStore
from ruma.storage.events import EventStore
from ruma.storage.key_backup import KeyBackupStore
from ruma.sync.handler import SyncHandler
from ruma.sync.notifier import SyncNotifier

__all__ = ["E2EEServices"]


@dataclass(frozen=True, slots=True)
class E2EEServices:
    store: E2EStore
    keys: E2EKeys
    to_device: ToDevice
    device_lists: DeviceLists
    backups: KeyBackups
    sync: E2EESync
    inbound_edus: InboundDeviceEdus

    @classmethod
    def build(
        cls,
        *,
        db: Database,
        clock: IReactorTime,
        server_name: str,
        events: EventStore,
        remote: RemoteKeyQuerier | None = None,
    ) -> E2EEServices:
        store = E2EStore(db)
        to_device = ToDevice(store=store, clock=clock, server_name=server_name)
        device_lists = DeviceLists(store, events)
        return cls(
            store=store,
            keys=E2EKeys(store=store, server_name=server_name, remote=remote),
            to_device=to_device,
            device_lists=device_lists,
            backups=KeyBackups(KeyBackupStore(db)),
            sync=E2EESync(store=store, to_device=to_device, device_lists=device_lists),
            inbound_edus=InboundDeviceEdus(clock=clock, store=store, server_name=server_name),
        )

    def attach_to_sync(self, handler: SyncHandler, notifier: SyncNotifier) -> None:
        """Fill the sync handler's per-device seam, and wake the syncs of everyone sharing
        a room with a user whose devices or keys changed."""
        handler.devices = self.sync
        notifier.fanout[DEVICE_LIST_STREAM] = self._rooms_of_row

    async def _rooms_of_row(self, row: StreamRow) -> Collection[str]:
        if row.user_id is None:
            return ()
        return await self.store.get_joined_rooms(row.user_id)
