"""The iterative auth checks (v2, v2.1 steps 2 and 4).

Events are applied to a state map in order; an event that the authorisation rules
reject is skipped. Each event is checked against its own (unrejected) auth events,
overridden, for every key the rules look at for it, by the state built so far.
"""

from __future__ import annotations

from collections.abc import Iterable

from ruma.protocol.auth import AuthError, check_auth
from ruma.protocol.events import Event, StateKey, auth_types_for_event

from .event_graph import EventGraph, state_key_of

__all__ = ["auth_state_for", "iterative_auth_checks"]


def auth_state_for(
    graph: EventGraph, event: Event, state: dict[StateKey, str]
) -> dict[StateKey, Event]:
    """The state ``event`` is authorised against during the iterative auth checks."""
    auth_state: dict[StateKey, Event] = {}
    for parent_id in graph.auth_parents(event):
        if graph.is_rejected(parent_id):
            continue
        parent = graph.get(parent_id)
        auth_state[state_key_of(parent)] = parent
    keys = auth_types_for_event(
        graph.room_version, event.type, event.sender, event.state_key, event.content
    )
    for key in keys:
        event_id = state.get(key)
        if event_id is not None and not graph.is_rejected(event_id):
            auth_state[key] = graph.get(event_id)
    return auth_state


def iterative_auth_checks(
    graph: EventGraph, event_ids: Iterable[str], state: dict[StateKey, str]
) -> dict[StateKey, str]:
    """Apply ``event_ids`` in order to ``state`` (updated in place, and returned).

    An event the caller marked rejected never enters the state, whatever the rules
    would now say (as in Synapse: its rejection may not have been state-dependent).
    """
    for event_id in event_ids:
        if graph.is_rejected(event_id):
            continue
        event = graph.get(event_id)
        try:
            check_auth(event, auth_state_for(graph, event, state))
        except AuthError:
            continue
        state[state_key_of(event)] = event_id
    return state
