"""Which servers are in a room: at an event (for its PDU) or now (for EDUs).

A server is in a room when at least one of its users' membership is ``join`` in the state
considered. Counts per server are kept per state group in a small LRU, and the count of a
member event's state group is derived from the group before it (the state after a state
event is the state before it plus that event), so a big room's member list is read once per
new current state, not once per event.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable

from ruma.protocol.events import Event
from ruma.storage.events import EventStore
from ruma.storage.federation_sender import FederationSenderStore

__all__ = ["RoomHosts", "server_of"]


def server_of(user_id: str) -> str:
    """The server name of a user ID (everything after the first colon)."""
    return user_id.partition(":")[2]


class RoomHosts:
    def __init__(
        self, events: EventStore, store: FederationSenderStore, *, cache_size: int = 256
    ) -> None:
        self._events = events
        self._store = store
        self._size = cache_size
        self._cache: OrderedDict[int, Counter[str]] = OrderedDict()

    def _get(self, group: int) -> Counter[str] | None:
        counts = self._cache.get(group)
        if counts is not None:
            self._cache.move_to_end(group)
        return counts

    def _put(self, group: int, counts: Counter[str]) -> None:
        self._cache[group] = counts
        self._cache.move_to_end(group)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def _counts(self, group: int) -> Counter[str]:
        counts = self._get(group)
        if counts is None:
            members = await self._events.state.get_state_group_members(group)
            memberships = await self._store.get_memberships(members.values())
            counts = Counter(
                server_of(user_id)
                for user_id, event_id in members.items()
                if memberships.get(event_id) == "join"
            )
            self._put(group, counts)
        return counts

    async def hosts_of_group(self, group: int) -> frozenset[str]:
        return frozenset(h for h, n in (await self._counts(group)).items() if n > 0)

    async def current_hosts(self, room_id: str) -> frozenset[str]:
        """Servers joined to the room in its current state."""
        group = await self._store.get_current_state_group(room_id)
        if group is None:
            return frozenset()
        return await self.hosts_of_group(group)

    async def current_hosts_of_rooms(self, room_ids: Iterable[str]) -> frozenset[str]:
        out: set[str] = set()
        for room_id in room_ids:
            out |= await self.current_hosts(room_id)
        return frozenset(out)

    async def hosts_around_event(self, event: Event) -> frozenset[str]:
        """Servers joined just before or just after ``event`` (a leave or kick still reaches
        the server leaving; a join reaches the server joining)."""
        groups = await self._events.get_state_groups_for_events([event.event_id])
        if event.event_id not in groups:
            return await self.current_hosts(event.room_id)
        before, after = groups[event.event_id]
        before_counts = await self._counts(before)
        if after != before and self._get(after) is None and event.type == "m.room.member":
            await self._derive(event, before, before_counts, after)
        after_counts = await self._counts(after) if after != before else before_counts
        return frozenset(h for h, n in (before_counts + after_counts).items() if n > 0)

    async def _derive(
        self, event: Event, before: int, before_counts: Counter[str], after: int
    ) -> None:
        target = event.state_key
        if target is None:
            return
        key = ("m.room.member", target)
        old_ids = await self._events.state.get_state_group_keys(before, [key])
        after_ids = await self._events.state.get_state_group_keys(after, [key])
        if after_ids.get(key) != event.event_id:
            return  # not simply "before plus this event": read the group in full instead
        old = old_ids.get(key)
        old_membership = (await self._store.get_memberships([old])).get(old) if old else None
        counts = Counter(before_counts)
        host = server_of(target)
        if old_membership == "join":
            counts[host] -= 1
        if event.membership == "join":
            counts[host] += 1
        self._put(after, counts)
