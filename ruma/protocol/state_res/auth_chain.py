"""Auth chains: the auth difference (v2) and the conflicted state subgraph (v2.1).

Both are computed with breadth-first walks of the auth DAG that visit each event once,
never by materialising one auth chain per event: a room whose power levels changed a
thousand times would otherwise hold a million chain entries.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from ruma.protocol.events import StateKey

from .event_graph import EventGraph
from .split_conflicted import StateMap

__all__ = ["auth_difference", "conflicted_subgraph"]


def auth_difference(
    graph: EventGraph,
    state_sets: Sequence[StateMap],
    unconflicted: StateMap,
    conflicted_keys: Collection[StateKey],
) -> set[str]:
    """The events that are in some but not all of the state sets' full auth chains.

    The full auth chain ``C_i`` of set ``S_i`` is taken to include ``S_i``'s own events
    as well as their auth chains (as Synapse computes it; the spec's wording leaves the
    set's own events out, which only differs for an unconflicted event that some set's
    events cite and others' do not, and would then be re-authed for no gain).

    Writing ``B`` for the unconflicted events and their auth chains and ``D_i`` for
    ``S_i``'s conflicted events and their auth chains, ``C_i = B ∪ D_i``, so
    ``∪C_i − ∩C_i = (∪D_i − ∩D_i) − B``: the walk of ``B`` is the only one over the whole
    room, and it is a single pass.
    """
    per_set: list[set[str]] = []
    for state_set in state_sets:
        conflicted_here = {state_set[key] for key in conflicted_keys if key in state_set}
        reach = graph.ancestors(conflicted_here)
        reach |= conflicted_here
        per_set.append(reach)
    if not per_set:
        return set()
    candidates = set().union(*per_set)
    candidates -= per_set[0].intersection(*per_set[1:])
    if not candidates:
        return candidates
    # Candidates that are unconflicted state, or in its auth chains, are in every C_i.
    unconflicted_ids = set(unconflicted.values())
    candidates -= unconflicted_ids
    if candidates:
        candidates -= graph.ancestors(unconflicted_ids)
    return candidates


def conflicted_subgraph(graph: EventGraph, conflicted_events: Iterable[str]) -> set[str]:
    """The events on some auth path between two conflicted events, endpoints included.

    That is every event that is both an auth ancestor of some conflicted event and a
    descendant of (or equal to) some conflicted event. Computed as the ancestors of the
    conflicted events, then a forward walk over just those from the conflicted events.
    """
    starts = set(conflicted_events)
    ancestors = graph.ancestors(starts)
    nodes = ancestors | starts
    children: dict[str, list[str]] = {}
    for event_id in nodes:
        for parent in graph.auth_parents(graph.get(event_id)):
            children.setdefault(parent, []).append(event_id)
    subgraph = set(starts)
    todo = list(starts)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in subgraph:
                subgraph.add(child)
                todo.append(child)
    return subgraph
