"""Splitting the state sets into unconflicted state and conflicted state.

The two algorithm families disagree on a key that only some sets hold:

* v1: absence is no conflict. A key held by some sets, all with the same event, is
  unconflicted.
* v2 and v2.1: a key is unconflicted only if *every* set holds it with the same event;
  otherwise each event any set holds for it is conflicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ruma.protocol.events import StateKey

__all__ = ["Conflicted", "StateMap", "split_v1", "split_v2"]

StateMap = Mapping[StateKey, str]
#: key -> the distinct event IDs the sets hold for it (at least two for v1; at least one
#: for v2, where a key held by only some sets conflicts with its absence).
Conflicted = dict[StateKey, set[str]]


def split_v1(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], Conflicted]:
    """Unconflicted and conflicted state as room version 1 defines them."""
    unconflicted: dict[StateKey, str] = dict(state_sets[0]) if state_sets else {}
    conflicted: Conflicted = {}
    for state_set in state_sets[1:]:
        for key, event_id in state_set.items():
            events = conflicted.get(key)
            if events is not None:
                events.add(event_id)
                continue
            current = unconflicted.get(key)
            if current is None:
                unconflicted[key] = event_id
            elif current != event_id:
                conflicted[key] = {current, event_id}
                del unconflicted[key]
    return unconflicted, conflicted


def split_v2(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], Conflicted]:
    """Unconflicted and conflicted state as room versions 2 and later define them."""
    if not state_sets:
        return {}, {}
    first, rest = state_sets[0], state_sets[1:]
    unconflicted: dict[StateKey, str] = {}
    conflicted: Conflicted = {}
    for key, event_id in first.items():
        for other in rest:
            if other.get(key) != event_id:
                events = {event_id}
                for state_set in rest:
                    held = state_set.get(key)
                    if held is not None:
                        events.add(held)
                conflicted[key] = events
                break
        else:
            unconflicted[key] = event_id
    for index, state_set in enumerate(rest):
        for key in state_set.keys() - first.keys():
            if key in conflicted:
                continue
            # Absent from the first set, so conflicted whatever the others hold.
            events = set()
            for other in rest[index:]:
                held = other.get(key)
                if held is not None:
                    events.add(held)
            conflicted[key] = events
    return unconflicted, conflicted
