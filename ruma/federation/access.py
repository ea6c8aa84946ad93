"""What another server may do and see in a room: server ACLs, being in the room, and
history visibility for servers.

Used by the history routes and the transaction handler (and by joins/queries): each
request about a room checks :meth:`RoomAccess.check_acl` first; history requests then
:meth:`RoomAccess.check_server_in_room`, and the events they return go through
:meth:`RoomAccess.filter_events_for_server`, which prunes (redacts) what the server may not
see rather than leaving holes in the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ruma.errors import forbidden
from ruma.federation.acl import host_of, server_allowed
from ruma.protocol.events import Event, StateKey
from ruma.storage.events import EventStore

__all__ = ["RoomAccess", "server_of"]

ACL: StateKey = ("m.room.server_acl", "")
HISTORY: StateKey = ("m.room.history_visibility", "")


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


class RoomAccess:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def acl_allows(self, room_id: str, server_name: str) -> bool:
        """Whether the room's current ``m.room.server_acl`` lets ``server_name`` take part."""
        event = await self._store.get_current_state_event(room_id, *ACL)
        return server_allowed(event.content if event is not None else None, server_name)

    async def check_acl(self, room_id: str, server_name: str) -> None:
        """403 ``M_FORBIDDEN`` if the room's server ACL denies ``server_name``."""
        if not await self.acl_allows(room_id, server_name):
            raise forbidden("Server is banned from this room by its server ACL")

    async def server_in_room(self, room_id: str, server_name: str) -> bool:
        """Whether a user of ``server_name`` is joined to the room now."""
        members = await self._store.get_current_members(room_id, "join")
        host = server_name.lower()
        return any(server_of(u).lower() == host for u in members)

    async def check_server_in_room(self, room_id: str, server_name: str) -> None:
        if not await self.server_in_room(room_id, server_name):
            raise forbidden(f"{host_of(server_name)} is not in room {room_id}")

    async def filter_events_for_server(
        self, server_name: str, events: Sequence[Event]
    ) -> list[Event]:
        """``events`` as ``server_name`` may see them: pruned where history visibility hides
        them (judged by the state before each event), whole otherwise.

        ``world_readable`` and ``shared`` history is visible to any server in the room;
        ``invited`` needs one of its users invited or joined at the time, ``joined`` one
        joined. Outliers (auth and state events) and the server's own users' membership
        events are always visible.
        """
        if not events:
            return []
        groups = await self._store.get_state_groups_for_events(e.event_id for e in events)
        verdicts: dict[int, bool] = {}
        out: list[Event] = []
        for event in events:
            g = groups.get(event.event_id)
            visible = True
            if g is not None and not (
                event.type == "m.room.member"
                and event.state_key is not None
                and server_of(event.state_key) == server_name
            ):
                if g[0] not in verdicts:
                    verdicts[g[0]] = await self._visible_at(g[0], server_name)
                visible = verdicts[g[0]]
            out.append(event if visible else event.redacted())
        return out

    async def _visible_at(self, group: int, server_name: str) -> bool:
        ids = await self._store.state.get_state_group_keys(group, [HISTORY])
        pdus = await self._store.get_pdus(ids.values())
        hv_event = pdus.get(ids.get(HISTORY, ""))
        hv = hv_event.content.get("history_visibility") if hv_event is not None else "shared"
        if hv not in ("invited", "joined"):
            return True  # world_readable, shared, and anything unknown (read as shared)
        allowed = ("join", "invite") if hv == "invited" else ("join",)
        state: Mapping[StateKey, str] = await self._store.state.get_state_group(group)
        members = [
            eid
            for (etype, skey), eid in state.items()
            if etype == "m.room.member" and server_of(skey) == server_name
        ]
        member_events = await self._store.get_pdus(members)
        return any(e.membership in allowed for e in member_events.values())
