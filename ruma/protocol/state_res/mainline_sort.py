"""The mainline ordering (v2, v2.1 step 3).

The mainline of the resolved power levels event ``P0`` is ``P0``, the power levels
event in its auth events ``P1``, that one's ``P2``, and so on to the first power levels
event. An event's *mainline position* is the index ``i`` of the first ``Pi`` met by
following power levels auth events from it (the event itself not counted), or infinity
if none is met. Events sort by greater position first (older power first), then smaller
``origin_server_ts``, then smaller event ID.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import AuthGraphCycleError
from .event_graph import EventGraph

__all__ = ["mainline_sort"]


def _mainline_depths(graph: EventGraph, power_levels_id: str | None) -> dict[str, int]:
    """Map each mainline event to its depth: 1 for the oldest, ``n`` for ``P0``.

    A depth rather than the spec's position so that "not on the mainline" is 0 and
    smaller depth means earlier, the direction the sort wants.
    """
    mainline: list[str] = []
    seen: set[str] = set()
    current = power_levels_id
    while current is not None:
        if current in seen:
            raise AuthGraphCycleError(mainline)
        seen.add(current)
        mainline.append(current)
        current = graph.power_levels_parent(graph.get(current))
    length = len(mainline)
    return {event_id: length - index for index, event_id in enumerate(mainline)}


def mainline_sort(
    graph: EventGraph, event_ids: Iterable[str], power_levels_id: str | None
) -> list[str]:
    """Sort events by the mainline ordering based on ``power_levels_id``."""
    event_ids = list(event_ids)
    if not event_ids:
        return event_ids
    depths = _mainline_depths(graph, power_levels_id)
    # Depth reached from each power levels event walked through, shared by every event
    # citing it (most conflicted events cite one of a handful of power levels events).
    reached: dict[str | None, int] = {None: 0}

    def depth_from(power_id: str | None) -> int:
        path: list[str] = []
        on_path: set[str] = set()
        current = power_id
        while current not in reached:
            assert current is not None
            if current in on_path:
                raise AuthGraphCycleError(path)
            depth = depths.get(current)
            if depth is not None:
                reached[current] = depth
                break
            path.append(current)
            on_path.add(current)
            current = graph.power_levels_parent(graph.get(current))
        result = reached[current]
        for walked in path:
            reached[walked] = result
        return result

    keys: dict[str, tuple[int, int, str]] = {}
    for event_id in event_ids:
        event = graph.get(event_id)
        depth = depth_from(graph.power_levels_parent(event))
        keys[event_id] = (depth, event.origin_server_ts, event_id)
    event_ids.sort(key=keys.__getitem__)
    return event_ids
