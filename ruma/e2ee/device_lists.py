"""Whose device lists a user's clients must refresh: ``device_lists`` in ``/sync`` and
``GET /keys/changes``.

Between two stream positions:

- ``changed``: users sharing a room with the user whose devices, device keys or
  cross-signing keys changed (the user themself included, for their other devices), and
  users who started sharing a room with them (they joined one of the user's rooms, or the
  user joined one of theirs);
- ``left``: users who shared a room with the user and no longer share any.

Any room counts, encrypted or not: an extra entry costs a client one ``/keys/query``, a
missing one costs it an undecryptable message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruma.storage.e2ee import E2EStore
from ruma.storage.events import EventStore

__all__ = ["DeviceListChanges", "DeviceLists"]

_GONE = frozenset({"leave", "ban"})


@dataclass(frozen=True, slots=True)
class DeviceListChanges:
    changed: frozenset[str]
    left: frozenset[str]


class DeviceLists:
    def __init__(self, store: E2EStore, events: EventStore) -> None:
        self._store = store
        self._events = events

    async def changes(self, user_id: str, since: int, upto: int) -> DeviceListChanges:
        if upto <= since:
            return DeviceListChanges(frozenset(), frozenset())
        updated = await self._store.get_device_list_changes(since, upto)
        joined_now = {r for r, *_ in await self._events.get_rooms_for_local_user(user_id)}
        mine = await self._events.get_membership_changes(user_id, since, upto)
        rooms_joined = {room for _, room, m, _ in mine if m == "join" and room in joined_now}
        rooms_left = {room for _, room, m, _ in mine if m in _GONE and room not in joined_now}

        candidates: set[str] = set()
        gone: set[str] = set()
        others = await self._store.get_member_changes(joined_now - rooms_joined, since, upto)
        for _, member, membership in others:
            if member == user_id:
                continue
            if membership == "join":
                candidates.add(member)
            elif membership in _GONE:
                gone.add(member)
        for room_id in rooms_joined:
            candidates.update(await self._events.get_current_members(room_id, "join"))
        for room_id in rooms_left:
            gone.update(await self._events.get_current_members(room_id, "join"))
        candidates.update(updated)
        candidates.discard(user_id)
        gone.discard(user_id)

        sharing = await self._store.get_users_sharing_rooms(user_id, candidates | gone)
        changed = candidates & sharing
        if user_id in updated:
            changed.add(user_id)
        left = gone - sharing
        return DeviceListChanges(frozenset(changed), frozenset(left))
