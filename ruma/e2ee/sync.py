"""The per-device part of ``/sync``: to-device messages, ``device_lists``,
``device_one_time_keys_count`` and ``device_unused_fallback_key_types``
(:class:`ruma.sync.handler.DeviceSyncSource`)."""

from __future__ import annotations

from ruma.e2ee.device_lists import DeviceLists
from ruma.e2ee.keys import default_key_counts
from ruma.e2ee.to_device import ToDevice
from ruma.storage.e2ee import E2EStore
from ruma.sync.handler import DeviceSyncData

__all__ = ["E2EESync"]


class E2EESync:
    def __init__(self, *, store: E2EStore, to_device: ToDevice, device_lists: DeviceLists) -> None:
        self._store = store
        self._to_device = to_device
        self._device_lists = device_lists

    async def device_sync(
        self, user_id: str, device_id: str | None, since: int | None, upto: int
    ) -> DeviceSyncData:
        changed: frozenset[str] = frozenset()
        left: frozenset[str] = frozenset()
        if since is not None:
            # An initial sync has no device_lists: the client queries every user it tracks.
            changes = await self._device_lists.changes(user_id, since, upto)
            changed, left = changes.changed, changes.left
        if device_id is None:
            return DeviceSyncData(changed=changed, left=left)
        messages, _ = await self._to_device.for_sync(user_id, device_id, since, upto)
        counts = await self._store.count_one_time_keys(user_id, device_id)
        fallback = await self._store.get_unused_fallback_key_types(user_id, device_id)
        return DeviceSyncData(
            to_device=messages,
            changed=changed,
            left=left,
            one_time_keys_count=default_key_counts(counts),
            unused_fallback_key_types=fallback,
        )
