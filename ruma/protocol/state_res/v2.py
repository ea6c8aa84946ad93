"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

1. Split the sets into the unconflicted state map and the conflicted state set; the
   *full conflicted set* adds the auth difference (and, in v2.1, the conflicted state
   subgraph).
2. Sort the power events of the full conflicted set, with the events of the full
   conflicted set in their auth chains, by the reverse topological power ordering, and
   apply them with the iterative auth checks: on top of the unconflicted state (v2) or
   of an empty state (v2.1).
3. Sort the remaining events by the mainline of the power levels resolved so far, and
   apply them with the iterative auth checks.
4. Put the unconflicted state map back on top.
"""

from __future__ import annotations

from collections.abc import Sequence

from ruma.protocol.events import StateKey

from .auth_chain import auth_difference, conflicted_subgraph
from .event_graph import POWER_LEVELS, EventGraph
from .iterative_auth_check import iterative_auth_checks
from .mainline_sort import mainline_sort
from .power_sort import power_sort_selection, reverse_topological_power_sort
from .split_conflicted import StateMap, split_v2

__all__ = ["resolve_v2"]


def resolve_v2(
    graph: EventGraph, state_sets: Sequence[StateMap], *, v2_1: bool
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with state resolution v2, or v2.1 if ``v2_1``."""
    unconflicted, conflicted = split_v2(state_sets)
    if not conflicted:
        return unconflicted
    conflicted_events: set[str] = set().union(*conflicted.values())
    full_conflicted_set = auth_difference(graph, state_sets, unconflicted, conflicted.keys())
    full_conflicted_set |= conflicted_events
    if v2_1:
        full_conflicted_set |= conflicted_subgraph(graph, conflicted_events)
    graph.require(full_conflicted_set)

    power_events = power_sort_selection(graph, full_conflicted_set)
    resolved: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    iterative_auth_checks(graph, reverse_topological_power_sort(graph, power_events), resolved)

    leftover = (event_id for event_id in full_conflicted_set if event_id not in power_events)
    ordered = mainline_sort(graph, leftover, resolved.get(POWER_LEVELS))
    iterative_auth_checks(graph, ordered, resolved)

    resolved.update(unconflicted)
    return resolved
