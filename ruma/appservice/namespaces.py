"""Which appservices care about what: users, aliases, rooms and events.

An appservice is *interested* in:

- a user: its own sender, or a user ID matching one of its user namespaces;
- an alias: matching one of its alias namespaces;
- a room: the room ID matches a room namespace, a local alias of the room matches an alias
  namespace, or a joined member of the room is in its user namespace;
- an event: sent by (or, for membership, about) a user it is interested in, or in a room it
  is interested in.

Membership interest is the expensive one, so :class:`Interest` keeps, per room, the joined
members that are in any appservice's namespace. The cache is loaded from the room's current
members the first time a room is asked about and then *maintained from the membership events
themselves*, which the pusher feeds it in stream order (:meth:`Interest.saw_event`); so after
the first load each event is judged against the membership just before it, without a
database read. The alias part is read through with a short time-to-live, since aliases change
without a stream row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime

from ruma.appservice.registration import Registration
from ruma.protocol.events import Event
from ruma.storage.events import EventStore
from ruma.storage.rooms import RoomStore

__all__ = ["Interest", "Registry"]

ALIAS_TTL = 60.0
MAX_CACHED_ROOMS = 50_000


class Registry:
    """The registered appservices, looked up by id, token and namespace."""

    def __init__(self, registrations: Sequence[Registration]) -> None:
        self.replace(registrations)

    def replace(self, registrations: Sequence[Registration]) -> None:
        """Swap in a new list (at startup, when a bridge module attaches)."""
        self.all: tuple[Registration, ...] = tuple(registrations)
        self._by_id = {r.id: r for r in registrations}
        self._by_token = {r.as_token: r for r in registrations}

    def __len__(self) -> int:
        return len(self.all)

    def get(self, as_id: str) -> Registration | None:
        return self._by_id.get(as_id)

    def for_token(self, as_token: str) -> Registration | None:
        return self._by_token.get(as_token)

    def exclusive_user_owner(self, user_id: str) -> Registration | None:
        """The appservice with an exclusive namespace containing ``user_id``."""
        for r in self.all:
            if r.is_user_in_namespace(user_id, exclusive_only=True):
                return r
        return None

    def exclusive_alias_owner(self, alias: str) -> Registration | None:
        for r in self.all:
            if r.is_alias_in_namespace(alias, exclusive_only=True):
                return r
        return None

    def interested_in_user(self, user_id: str) -> list[Registration]:
        return [r for r in self.all if r.is_interested_in_user(user_id)]

    def interested_in_alias(self, alias: str) -> list[Registration]:
        return [r for r in self.all if r.is_alias_in_namespace(alias)]

    def with_protocol(self, protocol: str) -> list[Registration]:
        return [r for r in self.all if protocol in r.protocols]


class Interest:
    """Interest of appservices in rooms and events, with the membership cache."""

    def __init__(
        self,
        registry: Registry,
        events: EventStore,
        rooms: RoomStore,
        clock: IReactorTime,
    ) -> None:
        self.registry = registry
        self._events = events
        self._rooms = rooms
        self._clock = clock
        # room_id -> {as_id: joined members in its namespace}
        self._members: OrderedDict[str, dict[str, set[str]]] = OrderedDict()
        self._aliases: dict[str, tuple[float, list[str]]] = {}
        self.loads = 0  # how many rooms were loaded from the database (tests, metrics)

    # -- the membership cache --------------------------------------------------------------

    async def _room_members(self, room_id: str) -> dict[str, set[str]]:
        cached = self._members.get(room_id)
        if cached is not None:
            self._members.move_to_end(room_id)
            return cached
        self.loads += 1
        joined = await self._events.get_current_members(room_id, "join")
        entry: dict[str, set[str]] = {}
        for user_id in joined:
            for reg in self.registry.all:
                if reg.is_interested_in_user(user_id):
                    entry.setdefault(reg.id, set()).add(user_id)
        self._members[room_id] = entry
        while len(self._members) > MAX_CACHED_ROOMS:
            self._members.popitem(last=False)
        return entry

    def saw_event(self, event: Event) -> None:
        """Keep the cache in step with a membership event (call in stream order)."""
        if event.type != "m.room.member" or event.state_key is None:
            return
        entry = self._members.get(event.room_id)
        if entry is None:
            return  # not cached: loaded from current state when first needed
        user_id = event.state_key
        joined = event.membership == "join"
        for reg in self.registry.all:
            if not reg.is_interested_in_user(user_id):
                continue
            members = entry.setdefault(reg.id, set())
            if joined:
                members.add(user_id)
            else:
                members.discard(user_id)
                if not members:
                    del entry[reg.id]

    def forget_all(self) -> None:
        self._members.clear()
        self._aliases.clear()

    def forget_room(self, room_id: str) -> None:
        self._members.pop(room_id, None)
        self._aliases.pop(room_id, None)

    async def _room_aliases(self, room_id: str) -> list[str]:
        now = self._clock.seconds()
        cached = self._aliases.get(room_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        aliases = await self._rooms.get_aliases_for_room(room_id)
        self._aliases[room_id] = (now + ALIAS_TTL, aliases)
        return aliases

    # -- questions -------------------------------------------------------------------------

    async def appservices_in_room(self, room_id: str) -> set[str]:
        """Ids of the appservices interested in ``room_id``."""
        out = {r.id for r in self.registry.all if r.is_room_in_namespace(room_id)}
        out.update(as_id for as_id, members in (await self._room_members(room_id)).items() if members)
        if any(r.aliases for r in self.registry.all) and len(out) < len(self.registry.all):
            aliases = await self._room_aliases(room_id)
            for reg in self.registry.all:
                if reg.id not in out and any(reg.is_alias_in_namespace(a) for a in aliases):
                    out.add(reg.id)
        return out

    async def is_room_interesting(self, reg: Registration, room_id: str) -> bool:
        return reg.id in await self.appservices_in_room(room_id)

    async def appservices_for_event(self, event: Event) -> set[str]:
        """Ids of the appservices interested in ``event`` (judged before :meth:`saw_event`)."""
        out = {r.id for r in self.registry.all if r.is_interested_in_user(event.sender)}
        if event.type == "m.room.member" and event.state_key is not None:
            out.update(r.id for r in self.registry.all if r.is_interested_in_user(event.state_key))
        if len(out) < len(self.registry.all):
            out.update(await self.appservices_in_room(event.room_id))
        return out

    async def appservices_for_presence(self, user_id: str) -> set[str]:
        """Appservices interested in the user or sharing a room with them."""
        out = {r.id for r in self.registry.all if r.is_interested_in_user(user_id)}
        if len(out) < len(self.registry.all) and self._events.is_local_user(user_id):
            for room_id, *_ in await self._events.get_rooms_for_local_user(user_id, ("join",)):
                out.update(await self.appservices_in_room(room_id))
                if len(out) == len(self.registry.all):
                    break
        return out
