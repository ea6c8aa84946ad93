"""Power events, and the reverse topological power ordering (v2, v2.1 step 1).

The ordering is the lexicographically smallest topological order of the auth DAG,
earliest first, where among the events whose auth events have all been placed the
smallest comes next: the sender with the *greater* power level (read from the event's
own auth events), then the smaller ``origin_server_ts``, then the smaller event ID.
Kahn's algorithm with a heap gives exactly that order.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable

from ruma.protocol.auth import get_user_power_level
from ruma.protocol.events import Event, StateKey

from .errors import AuthGraphCycleError
from .event_graph import CREATE, JOIN_RULES, MEMBER, POWER_LEVELS, EventGraph, state_key_of

__all__ = [
    "Level",
    "is_power_event",
    "power_sort_selection",
    "reverse_topological_power_sort",
    "sender_power_level",
]

#: A power level: an int, or ``math.inf`` for the creators of a v12 room.
Level = int | float


def is_power_event(event: Event) -> bool:
    """Whether the event is a *power event*: one that might take an ability away.

    The spec names ``m.room.power_levels``, ``m.room.join_rules``, and kicks and bans
    (``leave`` or ``ban`` memberships sent by someone other than the target). Like
    Synapse and the Rust implementations we also count ``m.room.create``: it can only
    ever be conflicted in a broken room, where sorting it first is the safe choice.
    """
    if event.state_key == "" and event.type in (POWER_LEVELS[0], JOIN_RULES[0], CREATE[0]):
        return True
    if event.type == MEMBER and event.state_key != event.sender:
        return event.content.get("membership") in ("leave", "ban")
    return False


def sender_power_level(graph: EventGraph, event: Event) -> Level:
    """The sender's power level as the event's own auth events say.

    With no power levels among them the room creator has 100 (v1-v11) and anyone else
    0; in v12 the creators have an infinite level regardless.
    """
    auth_state: dict[StateKey, Event] = {}
    for parent_id in graph.auth_parents(event):
        parent = graph.get(parent_id)
        if parent.state_key == "" and parent.type in (POWER_LEVELS[0], CREATE[0]):
            auth_state[state_key_of(parent)] = parent
    return get_user_power_level(event.sender, auth_state)


def power_sort_selection(graph: EventGraph, full_conflicted_set: Collection[str]) -> set[str]:
    """Step 1's set *X*: the power events of the full conflicted set, plus every event
    of the full conflicted set in the auth chain of one of them."""
    power_events = {
        event_id for event_id in full_conflicted_set if is_power_event(graph.get(event_id))
    }
    if not power_events:
        return power_events
    selected = graph.ancestors(power_events)
    selected.intersection_update(full_conflicted_set)
    selected |= power_events
    return selected


def _nearest_selected_ancestors(
    graph: EventGraph, selected: Collection[str]
) -> dict[str, set[str]]:
    """For each selected event, the selected events it reaches first through auth events.

    Paths may pass through unselected events: an order that respects these edges
    respects every auth-chain relation between selected events. Results for the
    unselected events crossed are memoised, so each is expanded once.
    """
    through: dict[str, frozenset[str]] = {}

    def reach_via(event_id: str) -> frozenset[str]:
        # Iterative post-order walk below an unselected event.
        cached = through.get(event_id)
        if cached is not None:
            return cached
        stack: list[tuple[str, bool]] = [(event_id, False)]
        while stack:
            current, expanded = stack.pop()
            if current in through:
                continue
            parents = graph.auth_parents(graph.get(current))
            if not expanded:
                stack.append((current, True))
                for parent in parents:
                    if parent not in selected and parent not in through:
                        stack.append((parent, False))
                continue
            found: set[str] = set()
            for parent in parents:
                if parent in selected:
                    found.add(parent)
                else:
                    found |= through[parent]
            through[current] = frozenset(found)
        return through[event_id]

    edges: dict[str, set[str]] = {}
    for event_id in selected:
        found: set[str] = set()
        for parent in graph.auth_parents(graph.get(event_id)):
            if parent in selected:
                found.add(parent)
            else:
                found |= reach_via(parent)
        edges[event_id] = found
    return edges


def reverse_topological_power_sort(graph: EventGraph, event_ids: Iterable[str]) -> list[str]:
    """Sort events by the reverse topological power ordering (earliest first)."""
    selected = set(event_ids)
    parents = _nearest_selected_ancestors(graph, selected)
    children: dict[str, list[str]] = {event_id: [] for event_id in selected}
    waiting: dict[str, int] = {}
    ready: list[tuple[Level, int, str]] = []
    for event_id, its_parents in parents.items():
        waiting[event_id] = len(its_parents)
        for parent in its_parents:
            children[parent].append(event_id)

    def order_key(event_id: str) -> tuple[Level, int, str]:
        event = graph.get(event_id)
        return (-sender_power_level(graph, event), event.origin_server_ts, event_id)

    for event_id, count in waiting.items():
        if count == 0:
            ready.append(order_key(event_id))
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        event_id = heapq.heappop(ready)[2]
        ordered.append(event_id)
        for child in children[event_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, order_key(child))
    if len(ordered) != len(selected):
        raise AuthGraphCycleError(selected.difference(ordered))
    return ordered
