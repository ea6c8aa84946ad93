"""``check_auth_events``: the rules on an event's ``auth_events`` list (rule 3 in v12,
rule 2 in v1-v11) that hold whatever the room's state is.

Whether an auth event was itself rejected (3.3) is known only to storage: the caller
must not pass rejected events, and must treat a missing one as a reason to fetch it or
to reject.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ruma.protocol.events import Event, StateKey, auth_types_for_event

from .common import CREATE, AuthError
from .rules import room_id_for_create_event_id


def _listed_events(event: Event, auth_events: Mapping[str, Event] | Iterable[Event]) -> list[Event]:
    """The events named by ``event.auth_event_ids``, in order, each exactly once."""
    by_id: Mapping[str, Event]
    if isinstance(auth_events, dict) or isinstance(auth_events, Mapping):
        by_id = auth_events
    else:
        given: dict[str, Event] = {}
        for given_event in auth_events:
            if given_event.event_id not in event.auth_event_ids:
                raise AuthError(
                    "auth_events.not_listed", f"{given_event.event_id} is not in auth_events"
                )
            given[given_event.event_id] = given_event
        by_id = given
    listed = []
    for event_id in event.auth_event_ids:
        auth_event = by_id.get(event_id)
        if auth_event is None:
            raise AuthError("auth_events.missing", f"auth event {event_id} was not given")
        listed.append(auth_event)
    return listed


def check_auth_events(
    event: Event,
    auth_events: Mapping[str, Event] | Iterable[Event],
    *,
    create_event: Event | None = None,
) -> dict[StateKey, Event]:
    """Check ``event``'s auth events and return them as an auth state map.

    ``auth_events`` is either a map from event ID (extra entries are ignored) or the
    events themselves (then exactly those listed). In room versions whose room ID comes
    from the create event (v12) the create event must not be listed; pass it as
    ``create_event`` and it is added to the returned map under ``("m.room.create", "")``
    once it is shown to be the room's.
    """
    room_version = event.room_version
    if event.type == "m.room.create":
        # The create event's auth_events are empty (auth events selection).
        if event.auth_event_ids:
            raise AuthError("create.has_auth_events", "the create event has auth_events")
        return {}
    allowed = auth_types_for_event(
        room_version, event.type, event.sender, event.state_key, event.content
    )
    result: dict[StateKey, Event] = {}
    create_implied = room_version.room_id_from_create_event
    room_id = event.room_id
    for auth_event in _listed_events(event, auth_events):
        # 3.5 (2.5): every auth event belongs to this room.
        if auth_event.room_id != room_id:
            raise AuthError(
                "auth_events.wrong_room",
                f"auth event {auth_event.event_id} is in {auth_event.room_id}",
            )
        state_key = auth_event.state_key
        if state_key is None:
            raise AuthError(
                "auth_events.not_state", f"auth event {auth_event.event_id} is not a state event"
            )
        key = (auth_event.type, state_key)
        # 3.1 (2.1): no duplicates.
        if key in result:
            raise AuthError("auth_events.duplicate", f"two auth events for {key}")
        # 3.2 (2.2): only what auth events selection picks (never the create event in v12).
        if create_implied and key == CREATE:
            raise AuthError(
                "auth_events.create_listed", "the create event must not be in auth_events"
            )
        if key not in allowed:
            raise AuthError("auth_events.unexpected", f"{key} is not an auth event for this event")
        result[key] = auth_event
    if room_version.room_id_from_create_event:
        # 2 (v12): the create event is implied by the room ID.
        if create_event is not None:
            if create_event.type != "m.room.create" or event.room_id != room_id_for_create_event_id(
                create_event.event_id
            ):
                raise AuthError(
                    "room_id.not_create_event",
                    f"{create_event.event_id} is not the create event of {event.room_id}",
                )
            result[CREATE] = create_event
    # 2.4 (v1-v11): the create event must be among them.
    elif CREATE not in result:
        raise AuthError("auth_events.no_create", "no m.room.create event in auth_events")
    return result
