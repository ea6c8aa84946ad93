"""Outbound EDUs about devices: to-device messages (``m.direct_to_device``), device-list
updates (``m.device_list_update``) and cross-signing key updates (``m.signing_key_update``).

Sources for :meth:`FederationSender.add_edu_source`, fed by the stream rows that
:mod:`ruma.storage.e2ee` writes:

- ``to_device`` rows with a destination in ``ref``: one ``m.direct_to_device`` EDU from the
  federation outbox row at that position (the row stays, so a replayed stream row makes
  the same EDU again);
- ``device_list`` rows of our users: ``m.device_list_update`` (a device's keys changed, or it
  was added or deleted) or ``m.signing_key_update`` (cross-signing keys changed), to every
  server sharing a room with the user. ``prev_id`` is left empty, so a server that missed
  an update resynchronises the whole list.
"""

from __future__ import annotations

from typing import Any

from ruma.bus import StreamRow
from ruma.federation.sender.edus import OutboundEdu
from ruma.federation.sender.hosts import RoomHosts, server_of
from ruma.federation.sender.sender import FederationSender
from ruma.storage.e2ee import DEVICE_LIST_STREAM, TO_DEVICE_STREAM, E2EStore

__all__ = ["DeviceListEdus", "ToDeviceEdus", "add_device_edu_sources"]


class ToDeviceEdus:
    kinds = frozenset({TO_DEVICE_STREAM})

    def __init__(self, store: E2EStore) -> None:
        self._store = store

    async def edus_for(self, row: StreamRow) -> list[OutboundEdu]:
        if row.user_id is not None or row.ref is None:
            return []  # a message for one of our own devices
        out = await self._store.get_outbound_to_device(row.position)
        if out is None:
            return []
        edu = OutboundEdu(
            frozenset({out.destination}),
            "m.direct_to_device",
            {
                "sender": out.sender,
                "type": out.message_type,
                "message_id": out.message_id,
                "messages": out.messages,
            },
        )
        return [edu]


class DeviceListEdus:
    kinds = frozenset({DEVICE_LIST_STREAM})

    def __init__(self, store: E2EStore, hosts: RoomHosts, server_name: str) -> None:
        self._store = store
        self._hosts = hosts
        self._server_name = server_name

    async def edus_for(self, row: StreamRow) -> list[OutboundEdu]:
        user_id = row.user_id
        if user_id is None or server_of(user_id) != self._server_name:
            return []  # another server's user: that server tells the others
        rooms = await self._store.get_joined_rooms(user_id)
        destinations = await self._hosts.current_hosts_of_rooms(rooms)
        if not destinations:
            return []
        if row.ref is None:
            keys = (await self._store.get_cross_signing_keys([user_id])).get(user_id, {})
            content: dict[str, Any] = {"user_id": user_id}
            if "master" in keys:
                content["master_key"] = keys["master"]
            if "self_signing" in keys:
                content["self_signing_key"] = keys["self_signing"]
            return [OutboundEdu(destinations, "m.signing_key_update", content,
                                coalesce_key=f"m.signing_key_update {user_id}")]
        device_id = row.ref
        content = {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": row.position,
            "prev_id": [],
            "deleted": not await self._store.device_exists(user_id, device_id),
        }
        if not content["deleted"]:
            found = await self._store.query_device_keys({user_id: [device_id]})
            device = found.get(user_id, {}).get(device_id)
            if device is not None:
                unsigned = device.pop("unsigned", {})
                content["keys"] = device
                if "device_display_name" in unsigned:
                    content["device_display_name"] = unsigned["device_display_name"]
        return [OutboundEdu(destinations, "m.device_list_update", content)]


def add_device_edu_sources(sender: FederationSender, store: E2EStore) -> None:
    """Make ``sender`` send our to-device messages and device-list updates."""
    sender.add_edu_source(ToDeviceEdus(store))
    sender.add_edu_source(DeviceListEdus(store, sender.hosts, sender.server_name))
