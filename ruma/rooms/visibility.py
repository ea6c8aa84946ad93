"""History visibility: which room events a user may see (``m.room.history_visibility``).

Each event is judged by the state before it: ``world_readable`` shows it to anyone;
``shared`` to those joined at the time or joined now; ``invited`` to those invited or
joined at the time; ``joined`` to those joined at the time. A user always sees their own
membership events.
"""

from __future__ import annotations

from collections.abc import Sequence

from ruma.protocol.events import Event, StateKey
from ruma.storage.events import EventStore

__all__ = ["filter_events_for_user", "history_visibility_of"]

HISTORY: StateKey = ("m.room.history_visibility", "")


def history_visibility_of(event: Event | None) -> str:
    if event is None:
        return "shared"
    value = event.content.get("history_visibility")
    return value if isinstance(value, str) else "shared"


async def filter_events_for_user(
    store: EventStore, user_id: str, events: Sequence[Event]
) -> list[Event]:
    """The events of ``events`` (all of one room or several) that ``user_id`` may see."""
    if not events:
        return []
    groups = await store.get_state_groups_for_events(e.event_id for e in events)
    member_key: StateKey = ("m.room.member", user_id)
    verdict_by_group: dict[tuple[int, str], tuple[str, str | None]] = {}
    current: dict[str, str | None] = {}
    out: list[Event] = []
    for event in events:
        if event.type == "m.room.member" and event.state_key == user_id:
            out.append(event)
            continue
        g = groups.get(event.event_id)
        if g is None:
            continue
        cache_key = (g[0], event.room_id)
        if cache_key not in verdict_by_group:
            ids = await store.state.get_state_group_keys(g[0], [HISTORY, member_key])
            pdus = await store.get_pdus(ids.values())
            hv = history_visibility_of(pdus.get(ids.get(HISTORY, "")))
            member = pdus.get(ids.get(member_key, ""))
            verdict_by_group[cache_key] = (hv, member.membership if member else None)
        hv, membership = verdict_by_group[cache_key]
        if hv == "world_readable" or membership == "join":
            out.append(event)
            continue
        if hv == "invited" and membership == "invite":
            out.append(event)
            continue
        if hv == "shared":
            if event.room_id not in current:
                now = await store.get_current_state_event(event.room_id, *member_key)
                current[event.room_id] = now.membership if now is not None else None
            if current[event.room_id] == "join":
                out.append(event)
    return out
