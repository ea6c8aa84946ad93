"""History visibility for the timelines of many rooms at once.

The rules are ``ruma.rooms.visibility``'s (each event judged by the state before it); that
module reads what it needs group by group and room by room, which for an initial sync over
hundreds of rooms is hundreds of transactions. This reads the same things for all the
events in a few: their state groups, the two keys of each group, and (for rooms whose
history is ``shared``) the user's current membership. ``tests/sync/test_batching.py``
checks that both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ruma.protocol.events import Event, StateKey
from ruma.rooms.visibility import HISTORY, history_visibility_of
from ruma.storage.events import EventStore
from ruma.storage.sync import SyncStore

__all__ = ["visible_event_ids"]


async def visible_event_ids(
    store: EventStore,
    sync_store: SyncStore,
    user_id: str,
    events: Sequence[Event],
    cached_group: Callable[[int], Mapping[StateKey, str] | None] = lambda _: None,
) -> set[str]:
    """The IDs of the events of ``events`` (of any rooms) that ``user_id`` may see;
    ``cached_group`` gives full state groups already at hand."""
    if not events:
        return set()
    member_key: StateKey = ("m.room.member", user_id)
    wanted_keys = (HISTORY, member_key)
    groups = await store.get_state_groups_for_events(e.event_id for e in events)
    keys: dict[int, dict[StateKey, str]] = {}
    to_read: dict[int, tuple[StateKey, ...]] = {}
    for before, _ in groups.values():
        if before in keys or before in to_read:
            continue
        full = cached_group(before)
        if full is None:
            to_read[before] = wanted_keys
        else:
            keys[before] = {k: full[k] for k in wanted_keys if k in full}
    keys.update(await sync_store.load_state_group_keys(store.state, to_read))
    wanted = {eid for found in keys.values() for eid in found.values()}
    pdus = await store.get_pdus(wanted)

    out: set[str] = set()
    # Events of "shared" rooms that only the user's current membership can show.
    shared: list[Event] = []
    for event in events:
        if event.type == "m.room.member" and event.state_key == user_id:
            out.add(event.event_id)
            continue
        g = groups.get(event.event_id)
        if g is None:
            continue
        found = keys.get(g[0], {})
        hv = history_visibility_of(pdus.get(found.get(HISTORY, "")))
        member = pdus.get(found.get(member_key, ""))
        membership = member.membership if member is not None else None
        if hv == "world_readable" or membership == "join":
            out.add(event.event_id)
        elif hv == "invited" and membership == "invite":
            out.add(event.event_id)
        elif hv == "shared":
            shared.append(event)
    if shared:
        rooms = {e.room_id for e in shared}
        current_ids = await sync_store.get_current_state_of_key(rooms, *member_key)
        current = await store.get_pdus(current_ids.values())
        joined_now = {
            room_id
            for room_id, event_id in current_ids.items()
            if event_id in current and current[event_id].membership == "join"
        }
        out.update(e.event_id for e in shared if e.room_id in joined_now)
    return out
