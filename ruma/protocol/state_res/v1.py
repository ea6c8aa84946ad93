"""State resolution for room version 1.

The resolved state ``R`` starts as the unconflicted state. Conflicted power levels,
then join rules, then each conflicted member key are resolved in turn: the conflicting
events are ordered by ascending ``depth`` then descending ``sha1(event_id)``, the first
is taken, and each next one replaces it while the authorisation rules allow it in ``R``;
the first that fails ends the run. Every other conflicted key takes the event with the
highest depth (then lowest ``sha1(event_id)``) that the rules allow in ``R``.

Room version 1 is known to reset state; this is kept only to agree with the rooms that
still use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from ruma.protocol.auth import AuthError, check_auth
from ruma.protocol.events import Event, StateKey, auth_types_for_event

from .event_graph import JOIN_RULES, MEMBER, POWER_LEVELS, EventGraph, state_key_of
from .split_conflicted import StateMap, split_v1

__all__ = ["resolve_v1"]


def _depth_order(events: Iterable[Event]) -> list[Event]:
    """Ascending depth, then descending ``sha1(event_id)``."""

    def key(event: Event) -> tuple[int, bytes]:
        digest = hashlib.sha1(event.event_id.encode("utf-8")).digest()
        return (event.depth, bytes(255 - byte for byte in digest))

    return sorted(events, key=key)


def _allowed(
    graph: EventGraph,
    event: Event,
    state: Mapping[StateKey, str],
    key: StateKey | None = None,
    current: str | None = None,
) -> bool:
    """Whether the rules allow ``event`` in ``state`` (with ``key`` holding ``current``)."""
    keys = auth_types_for_event(
        graph.room_version, event.type, event.sender, event.state_key, event.content
    )
    auth_state: dict[StateKey, Event] = {}
    for auth_key in keys:
        event_id = current if auth_key == key else state.get(auth_key)
        if event_id is not None:
            auth_state[auth_key] = graph.get(event_id)
    try:
        check_auth(event, auth_state)
    except AuthError:
        return False
    return True


def _resolve_auth_key(graph: EventGraph, events: list[Event], state: Mapping[StateKey, str]) -> str:
    """The winner of one auth key: the last of the run the rules allow, oldest first."""
    ordered = _depth_order(events)
    key = state_key_of(ordered[0])
    winner = ordered[0].event_id
    for event in ordered[1:]:
        if not _allowed(graph, event, state, key, winner):
            break
        winner = event.event_id
    return winner


def _resolve_other_key(
    graph: EventGraph, events: list[Event], state: Mapping[StateKey, str]
) -> str:
    """The winner of any other key: the newest event the rules allow."""
    ordered = _depth_order(events)
    ordered.reverse()
    for event in ordered:
        if _allowed(graph, event, state):
            return event.event_id
    # None is allowed. The spec is silent; like Synapse keep the oldest rather than
    # dropping the key.
    return ordered[-1].event_id


def resolve_v1(graph: EventGraph, state_sets: Sequence[StateMap]) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with the room version 1 algorithm."""
    state, conflicted = split_v1(state_sets)
    if not conflicted:
        return state
    graph.require(event_id for events in conflicted.values() for event_id in events)
    by_key = {
        key: [graph.get(event_id) for event_id in events] for key, events in conflicted.items()
    }
    # Each pass sees R as the previous passes left it; within a pass the keys are
    # resolved independently (as Synapse does), so the order of keys cannot matter.
    if POWER_LEVELS in by_key:
        state[POWER_LEVELS] = _resolve_auth_key(graph, by_key[POWER_LEVELS], state)
    if JOIN_RULES in by_key:
        state[JOIN_RULES] = _resolve_auth_key(graph, by_key[JOIN_RULES], state)
    members = {
        key: _resolve_auth_key(graph, events, state)
        for key, events in by_key.items()
        if key[0] == MEMBER
    }
    state.update(members)
    others = {
        key: _resolve_other_key(graph, events, state)
        for key, events in by_key.items()
        if key[0] != MEMBER and key not in (POWER_LEVELS, JOIN_RULES)
    }
    state.update(others)
    return state
