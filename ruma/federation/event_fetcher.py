"""Fetching room history from another server, every event checked on the way in.

:class:`EventFetcher` wraps the federation endpoints that return events (``/event``,
``/state``, ``/state_ids``, ``/event_auth``, ``/get_missing_events``, ``/backfill``). Each
PDU in an answer goes through :class:`~ruma.federation.inbound.check.PDUChecker` (format,
signatures, hash) and must belong to the room asked about; PDUs that fail are dropped and
logged, never returned. Nothing here stores anything: callers persist what they keep
through :meth:`ruma.rooms.persistence.RoomWriter.persist_event` (outliers for auth chains
and state, timeline events for backfill).

Usage (the join engineer on a ``send_join`` answer does the same with ``check_pdus``)::

    fetcher = EventFetcher(client, checker)
    event = await fetcher.get_event("remote.example", room_version, event_id, room_id=room_id)
    state_ids = await fetcher.get_state_ids("remote.example", room_id, event_id)
    chain = await fetcher.get_event_auth("remote.example", room_version, room_id, event_id)
    older = await fetcher.backfill("remote.example", room_version, room_id, [event_id], 100)

Failures of the request itself (unreachable, HTTP error, malformed answer) raise
:class:`FetchError`; its ``remote_error`` is the remote's Matrix error, if any, which must
not be passed on to a client as our own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from twisted.internet.defer import DeferredSemaphore, gatherResults
from twisted.logger import Logger

from ruma.federation.http import FederationError
from ruma.federation.inbound.check import PDUChecker
from ruma.federation.inbound.errors import PDUError
from ruma.protocol.events import Event
from ruma.protocol.room_versions import RoomVersion

__all__ = ["EventFetcher", "FetchError", "StateIds", "FederationJSON"]

FED_V1 = "/_matrix/federation/v1"


class FederationJSON(Protocol):
    """The part of :class:`~ruma.federation.http.FederationClient` used here."""

    async def get_json(self, destination: str, path: str, **kw: Any) -> Any: ...

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any: ...


class FetchError(Exception):
    """A fetch from ``destination`` failed or its answer was unusable."""

    def __init__(self, destination: str, msg: str, remote_error: Any = None) -> None:
        super().__init__(f"{destination}: {msg}")
        self.destination = destination
        self.remote_error = remote_error


@dataclass(frozen=True, slots=True)
class StateIds:
    """``/state_ids``: the state before an event and the auth chain of that state."""

    pdu_ids: tuple[str, ...]
    auth_chain_ids: tuple[str, ...]


def _q(value: str) -> str:
    return quote(value, safe="")


def _pdu_list(answer: Any, key: str, destination: str) -> list[Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get(key), list):
        raise FetchError(destination, f"answer has no {key!r} list")
    items: list[Any] = answer[key]
    return items


def _id_list(answer: Any, key: str, destination: str) -> tuple[str, ...]:
    items = _pdu_list(answer, key, destination)
    if not all(isinstance(i, str) for i in items):
        raise FetchError(destination, f"{key!r} holds non-strings")
    return tuple(items)


class EventFetcher:
    """Outbound history requests; see the module docstring."""

    log = Logger()

    def __init__(self, client: FederationJSON, checker: PDUChecker, *, concurrency: int = 10):
        self._client = client
        self.checker = checker
        self._concurrency = concurrency

    async def _get(self, destination: str, path: str, **kw: Any) -> Any:
        try:
            return await self._client.get_json(destination, path, **kw)
        except FederationError as e:
            raise FetchError(destination, str(e), e.body) from e

    async def _post(self, destination: str, path: str, body: Any) -> Any:
        try:
            return await self._client.post_json(destination, path, body)
        except FederationError as e:
            raise FetchError(destination, str(e), e.body) from e

    async def check_pdus(
        self,
        pdus: Iterable[Any],
        room_version: RoomVersion,
        origin: str,
        *,
        room_id: str | None,
        check_limits: bool = False,
    ) -> list[Event]:
        """Check each PDU; return those that pass (in order, duplicates dropped)."""
        out: list[Event] = []
        seen: set[str] = set()
        dropped = 0
        checked = await self.checker.check_pdus(
            pdus,
            room_version,
            origin,
            expected_room_id=room_id,
            check_limits=check_limits,
        )
        for event in checked:
            if isinstance(event, PDUError):
                dropped += 1
                continue
            if event.event_id not in seen:
                seen.add(event.event_id)
                out.append(event)
        if dropped:
            self.log.info(
                "dropped {n} invalid PDUs from {origin}", n=dropped, origin=origin
            )
        return out

    async def get_event(
        self,
        destination: str,
        room_version: RoomVersion,
        event_id: str,
        *,
        room_id: str | None = None,
    ) -> Event:
        """``GET /event/{eventId}``: the event, which must have the ID asked for."""
        answer = await self._get(destination, f"{FED_V1}/event/{_q(event_id)}")
        pdus = _pdu_list(answer, "pdus", destination)
        events = await self.check_pdus(pdus, room_version, destination, room_id=room_id)
        for event in events:
            if event.event_id == event_id:
                return event
        raise FetchError(destination, f"no valid event {event_id} in the answer")

    async def get_events(
        self,
        destination: str,
        room_version: RoomVersion,
        event_ids: Iterable[str],
        *,
        room_id: str | None = None,
    ) -> dict[str, Event]:
        """Several ``/event`` fetches, a few at a time; the ones that failed are left out."""
        sem = DeferredSemaphore(self._concurrency)
        out: dict[str, Event] = {}

        async def one(eid: str) -> None:
            try:
                out[eid] = await self.get_event(destination, room_version, eid, room_id=room_id)
            except FetchError as e:
                self.log.info("could not fetch {event_id}: {e}", event_id=eid, e=e)

        ds = [sem.run(one, eid) for eid in dict.fromkeys(event_ids)]
        await gatherResults(ds)
        return out

    async def get_state_ids(self, destination: str, room_id: str, event_id: str) -> StateIds:
        """``GET /state_ids/{roomId}?event_id=``: IDs of the state before ``event_id``."""
        answer = await self._get(
            destination, f"{FED_V1}/state_ids/{_q(room_id)}", query={"event_id": event_id}
        )
        return StateIds(
            _id_list(answer, "pdu_ids", destination),
            _id_list(answer, "auth_chain_ids", destination),
        )

    async def get_state(
        self, destination: str, room_version: RoomVersion, room_id: str, event_id: str
    ) -> tuple[list[Event], list[Event]]:
        """``GET /state/{roomId}?event_id=``: ``(state before event_id, auth chain)``."""
        answer = await self._get(
            destination, f"{FED_V1}/state/{_q(room_id)}", query={"event_id": event_id}
        )
        state = await self.check_pdus(
            _pdu_list(answer, "pdus", destination), room_version, destination, room_id=room_id
        )
        chain = await self.check_pdus(
            _pdu_list(answer, "auth_chain", destination),
            room_version,
            destination,
            room_id=room_id,
        )
        return state, chain

    async def get_event_auth(
        self, destination: str, room_version: RoomVersion, room_id: str, event_id: str
    ) -> list[Event]:
        """``GET /event_auth/{roomId}/{eventId}``: the event's auth chain."""
        answer = await self._get(destination, f"{FED_V1}/event_auth/{_q(room_id)}/{_q(event_id)}")
        return await self.check_pdus(
            _pdu_list(answer, "auth_chain", destination), room_version, destination, room_id=room_id
        )

    async def get_missing_events(
        self,
        destination: str,
        room_version: RoomVersion,
        room_id: str,
        *,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int = 10,
        min_depth: int = 0,
    ) -> list[Event]:
        """``POST /get_missing_events/{roomId}``: events between ours and ``latest_events``."""
        answer = await self._post(
            destination,
            f"{FED_V1}/get_missing_events/{_q(room_id)}",
            {
                "earliest_events": list(earliest_events),
                "latest_events": list(latest_events),
                "limit": limit,
                "min_depth": min_depth,
            },
        )
        return await self.check_pdus(
            _pdu_list(answer, "events", destination), room_version, destination, room_id=room_id
        )

    async def backfill(
        self,
        destination: str,
        room_version: RoomVersion,
        room_id: str,
        from_event_ids: Sequence[str],
        limit: int,
    ) -> list[Event]:
        """``GET /backfill/{roomId}?v=...&limit=``: ``from_event_ids`` and what precedes them."""
        answer = await self._get(
            destination,
            f"{FED_V1}/backfill/{_q(room_id)}",
            query={"v": list(from_event_ids), "limit": str(limit)},
        )
        return await self.check_pdus(
            _pdu_list(answer, "pdus", destination), room_version, destination, room_id=room_id
        )
