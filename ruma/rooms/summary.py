"""A room's public summary (the spec's ``PublicRoomsChunk``) from its current state.

One builder for the client directory, the hierarchy API and their federation twins, so the
rules (which content keys count, the ``invite`` default join rule) live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruma.protocol.events import Event

# The state the summary reads, all with an empty state key.
SUMMARY_TYPES = (
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.join_rules",
    "m.room.create",
)


def public_room_chunk(room_id: str, state: Mapping[str, Event], joined: int) -> dict[str, Any]:
    """``state`` maps event type to the room's current event of that type (state key "")."""
    out: dict[str, Any] = {"room_id": room_id, "num_joined_members": joined}
    for etype, key, name in (
        ("m.room.name", "name", "name"),
        ("m.room.topic", "topic", "topic"),
        ("m.room.avatar", "url", "avatar_url"),
        ("m.room.canonical_alias", "alias", "canonical_alias"),
    ):
        ev = state.get(etype)
        value = ev.content.get(key) if ev is not None else None
        if isinstance(value, str) and value:
            out[name] = value
    hv = state.get("m.room.history_visibility")
    out["world_readable"] = (
        hv is not None and hv.content.get("history_visibility") == "world_readable"
    )
    ga = state.get("m.room.guest_access")
    out["guest_can_join"] = ga is not None and ga.content.get("guest_access") == "can_join"
    jr = state.get("m.room.join_rules")
    rule = jr.content.get("join_rule") if jr is not None else None
    out["join_rule"] = rule if isinstance(rule, str) else "invite"
    create = state.get("m.room.create")
    if create is not None:
        rtype = create.content.get("type")
        if isinstance(rtype, str):
            out["room_type"] = rtype
        version = create.content.get("room_version", "1")
        out["room_version"] = version if isinstance(version, str) else "1"
    return out
