"""Presence: online / unavailable / offline for local users, with idle and sync timeouts.

A user is ``online`` while they sync with ``set_presence`` online (the default) or after
``PUT /presence``. Timers on the injected clock then move them on: ``unavailable`` after
``IDLE_TIMEOUT`` without activity, ``offline`` once they have not synced (nor set their
presence) for ``SYNC_TIMEOUT``. Each stored change takes a stream position, so /sync delivers
it to everyone sharing a room with the user.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ruma.errors import bad_json, forbidden
from ruma.storage.events import EventStore
from ruma.storage.presence import PresenceRow, PresenceStore

ONLINE = "online"
UNAVAILABLE = "unavailable"
OFFLINE = "offline"
STATES = frozenset({ONLINE, UNAVAILABLE, OFFLINE})

IDLE_TIMEOUT_MS = 5 * 60 * 1000
SYNC_TIMEOUT_MS = 30 * 1000
# last_active is stored again (taking a new position) at most this often while active.
LAST_ACTIVE_GRANULARITY_MS = 60 * 1000
CURRENTLY_ACTIVE_MS = 60 * 1000
SWEEP_INTERVAL_S = 5.0


class PresenceHandler:
    log = Logger()

    def __init__(self, clock: IReactorTime, store: PresenceStore, events: EventStore) -> None:
        self._clock = clock
        self.store = store
        self._events = events
        # Users not offline, with the time they last synced or set presence (ms).
        self._last_seen: dict[str, int] = {}
        self._syncing: dict[str, int] = {}
        self._sweeper = LoopingCall(self._sweep_now)
        self._sweeper.clock = clock
        self._sweeping: Deferred[None] | None = None

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load who was not offline at shutdown and start the timers."""
        now = self._now()
        for row in await self.store.get_active_presence():
            self._last_seen.setdefault(row.user_id, now)
        self._sweeper.start(SWEEP_INTERVAL_S, now=False)

    def stop(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()

    # -- inputs --------------------------------------------------------------------------

    async def set_state(
        self, requester: str, user_id: str, state: str, status_msg: str | None
    ) -> None:
        """``PUT /presence/{userId}/status``."""
        if requester != user_id:
            raise forbidden("Cannot set presence for other users")
        if state not in STATES:
            raise bad_json(f"Invalid presence state {state!r}")
        now = self._now()
        old = await self.store.get_presence(user_id)
        active = state == ONLINE
        last_active = now if active else (old.last_active_ts if old else 0)
        await self.store.set_presence(user_id, state, status_msg, last_active, active)
        if state == OFFLINE:
            self._last_seen.pop(user_id, None)
        else:
            self._last_seen[user_id] = now

    async def user_syncing(self, user_id: str, set_presence: str | None) -> None:
        """Called at the start of each /sync with its ``set_presence`` (default online)."""
        state = set_presence or ONLINE
        if state not in STATES:
            state = ONLINE
        if state == OFFLINE:
            return  # "offline": the client does not want syncing to change presence
        now = self._now()
        self._last_seen[user_id] = now
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        old = await self.store.get_presence(user_id)
        if state == ONLINE:
            if (
                old is None
                or old.state != ONLINE
                or now - old.last_active_ts > LAST_ACTIVE_GRANULARITY_MS
            ):
                await self.store.set_presence(
                    user_id, ONLINE, old.status_msg if old else None, now, True
                )
        elif old is None or old.state != UNAVAILABLE:
            await self.store.set_presence(
                user_id,
                UNAVAILABLE,
                old.status_msg if old else None,
                old.last_active_ts if old else 0,
                False,
            )

    def sync_finished(self, user_id: str) -> None:
        n = self._syncing.get(user_id, 0) - 1
        if n <= 0:
            self._syncing.pop(user_id, None)
        else:
            self._syncing[user_id] = n
        if user_id in self._last_seen:
            self._last_seen[user_id] = self._now()

    # -- timers --------------------------------------------------------------------------

    def _sweep_now(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self.sweep())
        d.addErrback(lambda f: self.log.failure("presence timeout sweep", f))
        return d

    async def sweep(self) -> None:
        """Apply the idle and sync timeouts."""
        now = self._now()
        for user_id, seen in list(self._last_seen.items()):
            row = await self.store.get_presence(user_id)
            if row is None or row.state == OFFLINE:
                self._last_seen.pop(user_id, None)
                continue
            if user_id not in self._syncing and now - seen > SYNC_TIMEOUT_MS:
                await self.store.set_presence(
                    user_id, OFFLINE, row.status_msg, row.last_active_ts, False
                )
                self._last_seen.pop(user_id, None)
            elif row.state == ONLINE and now - row.last_active_ts > IDLE_TIMEOUT_MS:
                await self.store.set_presence(
                    user_id, UNAVAILABLE, row.status_msg, row.last_active_ts, False
                )

    # -- outputs -------------------------------------------------------------------------

    async def get_status(self, requester: str, user_id: str) -> dict[str, Any]:
        """``GET /presence/{userId}/status``: 403 unless the users share a room."""
        if requester != user_id and not await self.share_a_room(requester, user_id):
            raise forbidden("You are not allowed to see their presence")
        row = await self.store.get_presence(user_id)
        if row is None:
            return {"presence": OFFLINE}
        return self.format(row, include_user=False)

    async def share_a_room(self, a: str, b: str) -> bool:
        rooms = await self._events.get_rooms_for_local_user(a, ("join",))
        for room_id, *_ in rooms:
            members = await self._events.get_current_members(room_id, "join")
            if b in members:
                return True
        return False

    def format(self, row: PresenceRow, include_user: bool = True) -> dict[str, Any]:
        now = self._now()
        content: dict[str, Any] = {"presence": row.state}
        if row.last_active_ts:
            content["last_active_ago"] = max(0, now - row.last_active_ts)
        if row.status_msg is not None:
            content["status_msg"] = row.status_msg
        if row.state == ONLINE:
            content["currently_active"] = (
                row.currently_active and now - row.last_active_ts < CURRENTLY_ACTIVE_MS
            ) or row.user_id in self._syncing
        else:
            content["currently_active"] = False
        if include_user:
            return {"type": "m.presence", "sender": row.user_id, "content": content}
        return content
