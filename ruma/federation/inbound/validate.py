"""Stage 1 of handling an incoming PDU: its format, per room version, and its size.

:func:`parse_pdu` turns untrusted JSON into an :class:`~ruma.protocol.events.Event` (which
checks the version's shape, canonical JSON rules and the 65,536-byte limit) and adds the
limits the server-server spec puts on PDUs that arrive live: at most 20 ``prev_events``
and 10 ``auth_events``. Backfilled and historical events are exempt from those two limits
(the spec says a backfill answer must not be validated on them), hence ``check_limits``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruma.federation.inbound.errors import InvalidPDU, WrongRoom
from ruma.protocol.errors import CanonicalJSONError, InvalidEvent
from ruma.protocol.events import MAX_PDU_SIZE, Event, compute_event_id
from ruma.protocol.room_versions import RoomVersion

__all__ = ["MAX_AUTH_EVENTS", "MAX_PDU_SIZE", "MAX_PREV_EVENTS", "guess_event_id", "parse_pdu"]

MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10

# Keys of ``unsigned`` a remote server may set; anything else there is dropped on the way
# in (it is not covered by hashes or signatures, so it could say anything).
KEPT_UNSIGNED = frozenset({"age", "invite_room_state", "knock_room_state"})


def parse_pdu(
    pdu: Any,
    room_version: RoomVersion,
    *,
    expected_room_id: str | None = None,
    check_limits: bool = True,
) -> Event:
    """Validate ``pdu`` for ``room_version``; raise :class:`InvalidPDU` or :class:`WrongRoom`."""
    if not isinstance(pdu, Mapping):
        raise InvalidPDU("PDU is not a JSON object")
    clean = dict(pdu)
    unsigned = clean.get("unsigned")
    if isinstance(unsigned, Mapping):
        clean["unsigned"] = {k: v for k, v in unsigned.items() if k in KEPT_UNSIGNED}
    try:
        event = Event.from_pdu(clean, room_version)
    except InvalidEvent as e:
        raise InvalidPDU(f"Invalid PDU: {e}", guess_event_id(pdu, room_version)) from e
    if check_limits:
        if len(event.prev_event_ids) > MAX_PREV_EVENTS:
            raise InvalidPDU(
                f"PDU has {len(event.prev_event_ids)} prev_events (at most {MAX_PREV_EVENTS})",
                event.event_id,
            )
        if len(event.auth_event_ids) > MAX_AUTH_EVENTS:
            raise InvalidPDU(
                f"PDU has {len(event.auth_event_ids)} auth_events (at most {MAX_AUTH_EVENTS})",
                event.event_id,
            )
    if expected_room_id is not None and event.room_id != expected_room_id:
        raise WrongRoom(
            f"event is in {event.room_id}, not {expected_room_id}", event.event_id
        )
    return event


def guess_event_id(pdu: Any, room_version: RoomVersion) -> str | None:
    """The event ID of a PDU that may not be valid, if one can be worked out at all."""
    if not isinstance(pdu, Mapping):
        return None
    try:
        if room_version.event_id_in_pdu:
            eid = pdu.get("event_id")
            return eid if isinstance(eid, str) else None
        return compute_event_id(pdu, room_version)
    except (InvalidEvent, CanonicalJSONError, ValueError, TypeError, KeyError, RecursionError):
        return None
