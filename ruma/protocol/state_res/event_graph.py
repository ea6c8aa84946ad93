"""The events a resolution may look at, and the auth DAG between them.

Every step of state resolution reads events through one :class:`EventGraph`, so a
missing event is always reported the same way (:class:`MissingEventsError`) and the
per-event work (the auth parents, the power level of the sender) is done once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from ruma.protocol.events import Event, StateKey
from ruma.protocol.room_versions import RoomVersion

from .errors import MissingEventsError

__all__ = [
    "CREATE",
    "JOIN_RULES",
    "MEMBER",
    "POWER_LEVELS",
    "EventGraph",
    "state_key_of",
]

CREATE: StateKey = ("m.room.create", "")
POWER_LEVELS: StateKey = ("m.room.power_levels", "")
JOIN_RULES: StateKey = ("m.room.join_rules", "")
MEMBER = "m.room.member"


def state_key_of(event: Event) -> StateKey:
    """The ``(type, state_key)`` an event holds in the room state.

    Only state events take part in state resolution; a message event here means a
    caller put one in a state map, which is a bug on their side.
    """
    state_key = event.state_key
    if state_key is None:
        raise ValueError(f"{event.event_id} is not a state event")
    return (event.type, state_key)


class EventGraph:
    """A read-only view of the caller's event map as the auth DAG.

    In room versions whose room ID is derived from the create event (v12), events no
    longer list the create event in ``auth_events``; it is still the root of every
    auth chain, so this view adds it as an implicit auth parent of every other event.
    """

    __slots__ = ("_create_ids", "_events", "_parents", "_rejected", "room_version")

    def __init__(
        self,
        room_version: RoomVersion,
        event_map: Mapping[str, Event],
        rejected_event_ids: Collection[str] = frozenset(),
    ) -> None:
        self.room_version = room_version
        self._events = event_map
        self._rejected = rejected_event_ids
        self._parents: dict[str, Sequence[str]] = {}
        self._create_ids: dict[str, str] = {}

    def get(self, event_id: str) -> Event:
        """The event, or :class:`MissingEventsError` if the caller did not supply it."""
        event = self._events.get(event_id)
        if event is None:
            raise MissingEventsError([event_id])
        return event

    def require(self, event_ids: Iterable[str]) -> None:
        """Raise one :class:`MissingEventsError` naming every absent event of ``event_ids``."""
        events = self._events
        missing = [event_id for event_id in event_ids if event_id not in events]
        if missing:
            raise MissingEventsError(missing)

    def is_rejected(self, event_id: str) -> bool:
        """Whether the caller marked the event as rejected (it never enters the state)."""
        return event_id in self._rejected

    def create_event_id(self, room_id: str) -> str:
        """The create event's ID for a room whose ID is derived from it (v12)."""
        create_id = self._create_ids.get(room_id)
        if create_id is None:
            create_id = "$" + room_id[1:]
            self._create_ids[room_id] = create_id
        return create_id

    def auth_parents(self, event: Event) -> Sequence[str]:
        """The event's auth events, plus the implicit create event in v12 rooms."""
        parents = self._parents.get(event.event_id)
        if parents is not None:
            return parents
        parents = event.auth_event_ids
        if self.room_version.room_id_from_create_event and (event.type, event.state_key) != (
            CREATE
        ):
            create_id = self.create_event_id(event.room_id)
            if create_id not in parents:
                parents = (*parents, create_id)
        self._parents[event.event_id] = parents
        return parents

    def ancestors(self, start: Iterable[str]) -> set[str]:
        """The union of the auth chains of ``start``: every event reachable through
        auth events, not counting a start event unless another one reaches it.

        Raises :class:`MissingEventsError` naming every unreachable event found (a
        missing event's own ancestors cannot be seen, so a retry may name more).
        """
        events = self._events
        parents_of = self.auth_parents
        found: set[str] = set()
        missing: set[str] = set()
        todo = list(start)
        pop = todo.pop
        push = todo.append
        add = found.add
        while todo:
            event_id = pop()
            event = events.get(event_id)
            if event is None:
                missing.add(event_id)
                continue
            for parent in parents_of(event):
                if parent not in found:
                    add(parent)
                    push(parent)
        if missing:
            raise MissingEventsError(missing)
        return found

    def power_levels_parent(self, event: Event) -> str | None:
        """The ``m.room.power_levels`` event among the event's auth events, if any."""
        for parent_id in self.auth_parents(event):
            parent = self.get(parent_id)
            if parent.type == POWER_LEVELS[0] and parent.state_key == "":
                return parent_id
        return None
