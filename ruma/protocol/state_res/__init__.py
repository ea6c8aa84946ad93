"""State resolution: one pure function per step of the spec's algorithms.

``resolve_state`` is the entry point. It never fetches: the caller passes every event
it may need (the events of all the state sets and their full auth chains; in v12 also
the create event), and gets :class:`MissingEventsError` naming what is absent.

Modules, in the order the v2 algorithm uses them: :mod:`.split_conflicted`,
:mod:`.auth_chain` (auth difference, conflicted state subgraph), :mod:`.power_sort`,
:mod:`.iterative_auth_check`, :mod:`.mainline_sort`, with the drivers :mod:`.v1` and
:mod:`.v2` (which also runs v2.1).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ruma.protocol.events import Event, StateKey
from ruma.protocol.room_versions import RoomVersion, StateResAlgorithm

from .errors import AuthGraphCycleError, MissingEventsError
from .event_graph import EventGraph
from .v1 import resolve_v1
from .v2 import resolve_v2

__all__ = ["AuthGraphCycleError", "MissingEventsError", "resolve_state"]


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    event_map: Mapping[str, Event],
    *,
    rejected_event_ids: Collection[str] = frozenset(),
) -> dict[StateKey, str]:
    """Resolve several states of one room into one, as ``room_version`` prescribes.

    ``state_sets`` map ``(type, state_key)`` to event IDs (the states after each of an
    event's prev events). ``event_map`` must hold every event of the sets and of their
    auth chains. ``rejected_event_ids`` names events the caller rejected: they are never
    admitted into the state, nor used as auth events, by the iterative auth checks.

    Returns a new map; the inputs are not modified. Raises :class:`MissingEventsError`
    when ``event_map`` lacks an event the algorithm needs.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    graph = EventGraph(room_version, event_map, rejected_event_ids)
    algorithm = room_version.state_res
    if algorithm is StateResAlgorithm.V1:
        return resolve_v1(graph, state_sets)
    return resolve_v2(graph, state_sets, v2_1=algorithm is StateResAlgorithm.V2_1)
