"""HTTP pushers: each user's notifications POSTed to their push gateways.

The push gateway API (``POST {data.url}``, normally ``/_matrix/push/v1/notify``) receives
``{"notification": {...}}`` with the event's ID, room, type, sender (and display name), the
room's name and alias, ``prio``, the content (unless the pusher's ``data.format`` is
``event_id_only``), ``counts.unread`` and one ``devices`` entry (``app_id``, ``pushkey``,
``pushkey_ts`` in seconds, the pusher's ``data`` without ``url``, and the rule's
``tweaks``). The gateway answers ``{"rejected": [pushkey, ...]}``; a rejected pushkey's
pusher is deleted.

Delivery is in order and at least once: each pusher stores the stream position of the last
notification it delivered (``pushers.last_stream_pos``) and resumes from it after a restart.
A failure (no answer, 5xx, 429) holds that pusher back with exponential backoff (1 s doubling
to 1 h) without holding back the others; a notification that has failed for a day is
skipped, and one that the gateway refuses outright (other 4xx) is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from ruma.outbound_http import json_body
from ruma.protocol.events import Event
from ruma.protocol.json import thaw
from ruma.push.evaluator import Outcome
from ruma.storage.events import EventStore
from ruma.storage.push import PushAction, Pusher, PushStore

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 3600.0
GIVE_UP_AFTER_MS = 24 * 3600 * 1000
REQUEST_TIMEOUT_S = 20.0
BATCH = 20


class _Rejected(Exception):
    """The gateway said this pushkey is no longer valid."""


class _Dropped(Exception):
    """The gateway refused this notification for good (4xx): skip it."""


class HttpPusherPool(Service):
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: PushStore,
        events: EventStore,
        agent: IAgent,
        settled: Callable[[], int] | None = None,
    ) -> None:
        self._clock = clock
        # The settled stream position: delivery never reads past it (see _deliver).
        self._settled = settled
        self._waiting: list[tuple[int, list[str]]] = []
        self._store = store
        self._events = events
        self._agent = agent
        self._running: dict[str, Deferred[None]] = {}
        self._again: set[str] = set()
        # (user_id, app_id, pushkey) -> (current delay, retry timer)
        self._backoff: dict[tuple[str, str, str], tuple[float, IDelayedCall]] = {}
        # (user_id, app_id, pushkey) -> the last backoff delay (grows while failing)
        self._delays: dict[tuple[str, str, str], float] = {}
        self._starting: Deferred[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addErrback(lambda f: self.log.failure("starting pushers", f))

    async def _start(self) -> None:
        for user_id in sorted({p.user_id for p in await self._store.get_pushers()}):
            self.kick(user_id)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        for _, timer in self._backoff.values():
            if timer.active():
                timer.cancel()
        self._backoff.clear()
        running = list(self._running.values())
        for d in running:
            d.cancel()
        return succeed(None)

    # -- wake-ups ------------------------------------------------------------------------

    async def on_notified(self, user_ids: Collection[str], position: int | None = None) -> None:
        """``user_ids`` have new notifications, at stream ``position`` (once it settles)."""
        # Most users have no pusher: skip them without starting a delivery run each.
        users = [u for u in user_ids if self._store.may_have_pushers(u)]
        if not users:
            return
        if position is not None and self._settled is not None and self._settled() < position:
            # An earlier position is still being written: deliver once it is settled.
            self._waiting.append((position, users))
            return
        for user_id in users:
            self.kick(user_id)

    def on_settled(self, position: int) -> None:
        """The database's settled stream position advanced (a positions listener)."""
        if not self._waiting:
            return
        ready = [users for pos, users in self._waiting if pos <= position]
        self._waiting = [(pos, users) for pos, users in self._waiting if pos > position]
        for users in ready:
            for user_id in users:
                self.kick(user_id)

    async def on_pushers_changed(self, user_id: str) -> None:
        self.kick(user_id)

    def kick(self, user_id: str) -> None:
        """Deliver whatever ``user_id``'s pushers have not delivered yet."""
        if not self.running:
            return
        if user_id in self._running:
            self._again.add(user_id)
            return
        d = Deferred.fromCoroutine(self._run(user_id))
        if not d.called:
            self._running[user_id] = d

    async def _run(self, user_id: str) -> None:
        try:
            while True:
                self._again.discard(user_id)
                for pusher in await self._store.get_pushers(user_id):
                    if (pusher.user_id, pusher.app_id, pusher.pushkey) in self._backoff:
                        continue
                    try:
                        await self._deliver(pusher)
                    except Exception:
                        self.log.failure("pusher {app_id} of {user_id}", app_id=pusher.app_id, user_id=user_id)
                if user_id not in self._again:
                    break
        finally:
            self._running.pop(user_id, None)

    # -- delivery ------------------------------------------------------------------------

    async def _deliver(self, pusher: Pusher) -> None:
        last = pusher.last_stream_pos
        failing_since = pusher.failing_since
        while True:
            # Events of different rooms may commit out of order: read only below the settled
            # position, or a notification committed late below ``last`` would be skipped.
            upto = self._settled() if self._settled is not None else None
            actions = await self._store.get_push_actions_after(pusher.user_id, last, BATCH, upto)
            if not actions:
                return
            for action in actions:
                try:
                    await self._send(pusher, action)
                except _Rejected:
                    self.log.info(
                        "push gateway rejected pushkey of {app_id} for {user_id}: pusher removed",
                        app_id=pusher.app_id,
                        user_id=pusher.user_id,
                    )
                    await self._store.delete_pusher(pusher.user_id, pusher.app_id, pusher.pushkey)
                    return
                except _Dropped as e:
                    self.log.warn("push gateway refused a notification: {why}", why=str(e))
                except Exception as e:
                    now = int(self._clock.seconds() * 1000)
                    if failing_since is None:
                        failing_since = now
                    if now - failing_since < GIVE_UP_AFTER_MS:
                        await self._store.update_pusher_progress(pusher, last, failing_since)
                        self._hold_back(pusher, repr(e))
                        return
                    self.log.warn(
                        "giving up on a notification for {user_id} after a day of failures",
                        user_id=pusher.user_id,
                    )
                last = action.stream_pos
                failing_since = None
                self._backoff.pop((pusher.user_id, pusher.app_id, pusher.pushkey), None)
                self._delays.pop((pusher.user_id, pusher.app_id, pusher.pushkey), None)
                await self._store.update_pusher_progress(pusher, last, None)

    def _hold_back(self, pusher: Pusher, why: str) -> None:
        key = (pusher.user_id, pusher.app_id, pusher.pushkey)
        delay = min(self._delays.get(key, MIN_BACKOFF_S / 2) * 2, MAX_BACKOFF_S)
        self._delays[key] = delay
        self.log.warn(
            "push to {app_id} for {user_id} failed ({why}); retrying in {delay} s",
            app_id=pusher.app_id,
            user_id=pusher.user_id,
            why=why,
            delay=delay,
        )

        def retry() -> None:
            self._backoff.pop(key, None)
            self.kick(pusher.user_id)

        self._backoff[key] = (delay, self._clock.callLater(delay, retry))

    async def _send(self, pusher: Pusher, action: PushAction) -> None:
        event = await self._events.get_event(action.event_id)
        if event is None:
            return
        body = await self.notification_for(pusher, action, event)
        url = pusher.data.get("url")
        if not isinstance(url, str):
            raise _Dropped("pusher has no url")
        headers = Headers({b"User-Agent": [b"Ruma"]})
        d = self._agent.request(b"POST", url.encode("utf-8"), headers, json_body(headers, body))
        d.addTimeout(REQUEST_TIMEOUT_S, self._clock)
        response = await d
        d2: Deferred[bytes] = readBody(response)
        d2.addTimeout(REQUEST_TIMEOUT_S, self._clock)
        raw = await d2
        code = int(response.code)
        if code == 429 or code >= 500:
            raise ConnectionError(f"gateway answered {code}")
        if 400 <= code < 500:
            raise _Dropped(f"gateway answered {code}")
        if not 200 <= code < 300:
            raise ConnectionError(f"gateway answered {code}")
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if isinstance(rejected, list) and pusher.pushkey in rejected:
            raise _Rejected()

    async def notification_for(self, pusher: Pusher, action: PushAction, event: Event) -> dict[str, Any]:
        """The body POSTed to the gateway for one notification."""
        tweaks = Outcome("", tuple(action.actions)).tweaks
        device_data = {k: v for k, v in pusher.data.items() if k != "url"}
        device = {
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.pushkey_ts // 1000,
            "data": device_data,
            "tweaks": tweaks,
        }
        prio = "high" if (event.type == "m.room.encrypted" or tweaks.get("highlight") or tweaks.get("sound")) else "low"
        counts = {"unread": await self._store.get_total_unread(pusher.user_id)}
        n: dict[str, Any] = {
            "event_id": event.event_id,
            "room_id": event.room_id,
            "prio": prio,
            "counts": counts,
            "devices": [device],
        }
        if pusher.data.get("format") != "event_id_only":
            n["type"] = event.type
            n["sender"] = event.sender
            n["content"] = thaw(event.content)
            if event.type == "m.room.member" and event.state_key is not None:
                n["user_is_target"] = event.state_key == pusher.user_id
            keys = [("m.room.member", event.sender), ("m.room.name", ""), ("m.room.canonical_alias", "")]
            ids = await self._events.get_current_state_keys(event.room_id, keys)
            state = await self._events.get_events(ids.values())
            by_key = {k: state[i] for k, i in ids.items() if i in state}
            sender_name = _content_str(by_key.get(("m.room.member", event.sender)), "displayname")
            if sender_name:
                n["sender_display_name"] = sender_name
            room_name = _content_str(by_key.get(("m.room.name", "")), "name")
            if room_name:
                n["room_name"] = room_name
            alias = _content_str(by_key.get(("m.room.canonical_alias", "")), "alias")
            if alias:
                n["room_alias"] = alias
        return {"notification": n}


def _content_str(event: Event | None, key: str) -> str | None:
    if event is None:
        return None
    value = event.content.get(key) if isinstance(event.content, Mapping) else None
    return value if isinstance(value, str) else None
