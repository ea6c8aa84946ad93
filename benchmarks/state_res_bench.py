"""Benchmark: resolving two forks of a large room.

The room (version 12 by default, so state res v2.1 with its conflicted subgraph) has a
create event, power levels with ten moderators, public join rules and ``members``
joined users, every event real and signed. Two forks then change ``conflicted`` pieces
of state between them: the creator on one fork, a moderator on the other, each sending
power levels changes, topics, names, join rules, kicks, bans, leaves and profile
changes. :func:`bench_state_res` times ``resolve_state`` on the states at the two tips.

Run ``python -m benchmarks.state_res_bench [members] [conflicted]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from ruma.protocol.events import Event, StateKey, auth_types_for_event, build_event
from ruma.protocol.room_versions import RoomVersion, RoomVersions
from ruma.protocol.signing import SigningKey, generate_signing_key
from ruma.protocol.state_res import resolve_state

SERVER = "bench.example"
CREATOR = f"@creator:{SERVER}"
MODERATORS = 10


def _user(index: int) -> str:
    return f"@user{index}:{SERVER}"


class _Room:
    """Appends signed events to one line of the DAG, tracking its state."""

    def __init__(self, room_version: RoomVersion, key: SigningKey) -> None:
        self.room_version = room_version
        self.key = key
        self.events: dict[str, Event] = {}
        self.room_id: str | None = None
        self.ts = 1_700_000_000_000

    def send(
        self,
        state: dict[StateKey, str],
        tip: Event | None,
        sender: str,
        type: str,
        content: Mapping[str, Any],
        state_key: str,
    ) -> Event:
        keys = auth_types_for_event(self.room_version, type, sender, state_key, content)
        auth_events = [self.events[state[key]] for key in keys if key in state]
        self.ts += 1
        event = build_event(
            self.room_version,
            room_id=self.room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_events=[tip] if tip is not None else [],
            auth_events=auth_events,
            origin_server_ts=self.ts,
            server_name=SERVER,
            signing_key=self.key,
            event_id_localpart=f"e{len(self.events)}",
        )
        if self.room_id is None:
            self.room_id = event.room_id
        self.events[event.event_id] = event
        state[(type, state_key)] = event.event_id
        return event


def _levels(room_version: RoomVersion, extra: Mapping[str, int]) -> dict[str, Any]:
    users = {_user(index): 50 for index in range(MODERATORS)}
    if not room_version.privileged_creators:
        users[CREATOR] = 100
    users.update(extra)
    return {"users": users}


def _fork(
    room: _Room,
    state: dict[StateKey, str],
    tip: Event,
    sender: str,
    count: int,
    first_target: int,
    tag: str,
) -> Event:
    """``count`` state changes by ``sender`` on top of ``state``/``tip`` (updated)."""
    rv = room.room_version
    for step in range(count):
        target = _user(first_target + step)
        kind = step % 8
        if kind == 0:
            args: tuple[str, Mapping[str, Any], str] = (
                "m.room.power_levels",
                _levels(rv, {_user(first_target + step + 1): 10 + step % 30}),
                "",
            )
            tip = room.send(state, tip, sender, *args)
        elif kind == 1:
            tip = room.send(state, tip, sender, "m.room.topic", {"topic": f"{tag} {step}"}, "")
        elif kind == 2:
            tip = room.send(state, tip, sender, "m.room.name", {"name": f"{tag} {step}"}, "")
        elif kind == 3:
            rule = "invite" if step % 16 == 3 else "public"
            tip = room.send(state, tip, sender, "m.room.join_rules", {"join_rule": rule}, "")
        elif kind == 4:
            tip = room.send(state, tip, sender, "m.room.member", {"membership": "leave"}, target)
        elif kind == 5:
            tip = room.send(state, tip, sender, "m.room.member", {"membership": "ban"}, target)
        elif kind == 6:
            content = {"membership": "leave"}
            tip = room.send(state, tip, target, "m.room.member", content, target)
        else:
            content = {"membership": "join", "displayname": f"{tag} {step}"}
            tip = room.send(state, tip, target, "m.room.member", content, target)
    return tip


def build_forked_room(
    members: int = 10_000,
    conflicted: int = 100,
    room_version: RoomVersion = RoomVersions.V12,
) -> tuple[list[dict[StateKey, str]], dict[str, Event]]:
    """The two forks' states and every event of the room."""
    room = _Room(room_version, generate_signing_key("bench"))
    state: dict[StateKey, str] = {}
    create_content: dict[str, Any] = {"room_version": room_version.identifier}
    if not room_version.implicit_room_creator:
        create_content["creator"] = CREATOR
    tip = room.send(state, None, CREATOR, "m.room.create", create_content, "")
    tip = room.send(state, tip, CREATOR, "m.room.member", {"membership": "join"}, CREATOR)
    tip = room.send(state, tip, CREATOR, "m.room.power_levels", _levels(room_version, {}), "")
    tip = room.send(state, tip, CREATOR, "m.room.join_rules", {"join_rule": "public"}, "")
    for index in range(members):
        user = _user(index)
        tip = room.send(state, tip, user, "m.room.member", {"membership": "join"}, user)

    fork_a, fork_b = dict(state), dict(state)
    half = conflicted // 2
    # Targets start past the moderators; the forks touch different members.
    _fork(room, fork_a, tip, CREATOR, conflicted - half, MODERATORS, "creator")
    _fork(room, fork_b, tip, _user(0), half, MODERATORS + conflicted, "moderator")
    return [fork_a, fork_b], room.events


def bench_state_res(members: int = 10_000, conflicted: int = 100) -> float:
    """Seconds ``resolve_state`` takes on the forked room (best of three runs)."""
    state_sets, events = build_forked_room(members, conflicted)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        resolve_state(RoomVersions.V12, state_sets, events)
        best = min(best, time.perf_counter() - started)
    return best


if __name__ == "__main__":
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    conflicted = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = bench_state_res(members, conflicted)
    print(
        f"state_res: {members} members, {conflicted} conflicted state events: "
        f"{seconds * 1000:.1f} ms"
    )
