"""``PUT /_matrix/federation/v1/send/{txnId}``: a transaction of PDUs and EDUs.

- The body's ``origin`` must be the server that signed the request; at most 50 PDUs and
  100 EDUs (else 400 and nothing is processed).
- Idempotent on ``(origin, txnId)``: the answer is stored, and a retry (or a copy arriving
  while the first is still being processed) gets the same answer without anything being
  processed or stored twice.
- PDUs are grouped by room; rooms are processed concurrently, each room's PDUs one after
  the other (by depth, then as sent). Each PDU's outcome is in the answer:
  ``{}`` when it is stored (also soft-failed, or already known), ``{"error": ...}`` when it
  was refused (invalid, bad signature, unknown room, ACL) or rejected by the auth rules.
- Everything is processed before the answer: there is no queue to overflow, so a sender
  that sends transaction after transaction loses nothing. The one exception: PDUs for a
  room this server is in the middle of joining are answered ``{}`` and processed once
  the join is persisted (:mod:`.joining`).
- EDUs are handed to :class:`~ruma.federation.inbound.edus.EDUHandler` after the PDUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ruma.errors import Codes, MatrixError, bad_json
from ruma.federation.access import RoomAccess, server_of
from ruma.federation.inbound.check import PDUChecker
from ruma.federation.inbound.edus import EDUHandler
from ruma.federation.inbound.errors import PDUError
from ruma.federation.inbound.joining import JoiningRooms, joining_rooms
from ruma.federation.inbound.pdu import InboundPDUHandler
from ruma.federation.inbound.validate import guess_event_id
from ruma.protocol.events import Event
from ruma.protocol.room_versions import DEFAULT_ROOM_VERSION
from ruma.rooms.persistence import UnknownRoom
from ruma.storage.events import EventStore
from ruma.storage.federation import FederationInboundStore

__all__ = ["MAX_EDUS", "MAX_PDUS", "TransactionHandler"]

MAX_PDUS = 50
MAX_EDUS = 100

JsonDict = dict[str, Any]


class TransactionHandler:
    log = Logger()

    def __init__(
        self,
        *,
        clock: IReactorTime,
        txns: FederationInboundStore,
        events: EventStore,
        checker: PDUChecker,
        pdus: InboundPDUHandler,
        edus: EDUHandler,
        access: RoomAccess,
        joining: JoiningRooms | None = None,
    ) -> None:
        self._clock = clock
        self._txns = txns
        self._events = events
        self._checker = checker
        self._pdus = pdus
        self._edus = edus
        self._access = access
        self._in_flight: dict[tuple[str, str], list[Deferred[JsonDict]]] = {}
        # Rooms we are joining: their PDUs wait for the join, then come back here.
        self.joining = joining if joining is not None else joining_rooms(events)
        self.joining.processor = self._process_queued

    async def on_transaction(self, origin: str, txn_id: str, body: Any) -> JsonDict:
        """Handle a transaction ``origin`` sent (the request is already authenticated)."""
        pdus, edus = self._validate(origin, body)
        key = (origin, txn_id)
        if key in self._in_flight:
            return await self._wait_for(key)
        stored = await self._txns.get_txn_response(origin, txn_id)
        if stored is not None:
            self.log.info("{origin} resent transaction {txn_id}", origin=origin, txn_id=txn_id)
            return stored
        if key in self._in_flight:
            return await self._wait_for(key)
        # Processing is not tied to this request: if the sender hangs up (and retries),
        # the work goes on and the retry gets its answer.
        self._in_flight[key] = []
        processing = Deferred.fromCoroutine(self._process(origin, txn_id, pdus, edus))

        def finished(result: Any) -> None:
            for w in self._in_flight.pop(key, []):
                if not w.called:
                    if isinstance(result, Failure):
                        w.errback(result)
                    else:
                        w.callback(result)
            if isinstance(result, Failure):
                self.log.failure("transaction {txn_id} from {origin}", result,
                                 txn_id=txn_id, origin=origin)

        answer = self._wait_for(key)
        processing.addBoth(finished)
        return await answer

    def _wait_for(self, key: tuple[str, str]) -> Deferred[JsonDict]:
        """The answer of the transaction ``key`` being processed."""
        d: Deferred[JsonDict] = Deferred()
        self._in_flight[key].append(d)
        return d

    def _validate(self, origin: str, body: Any) -> tuple[list[Any], list[Any]]:
        if not isinstance(body, Mapping):
            raise bad_json("Transaction must be a JSON object")
        if body.get("origin") != origin:
            raise MatrixError(
                403, Codes.FORBIDDEN, "Transaction origin does not match the signing server"
            )
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise bad_json("pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise bad_json(f"A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")
        return pdus, edus

    async def _process(
        self, origin: str, txn_id: str, pdus: list[Any], edus: list[Any]
    ) -> JsonDict:
        results: dict[str, JsonDict] = {}
        by_room: dict[str, list[Any]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, Mapping) else None
            if not isinstance(room_id, str):
                eid = guess_event_id(pdu, DEFAULT_ROOM_VERSION)
                if eid is not None:
                    results[eid] = {"error": "PDU has no room_id"}
                self.log.info("{origin} sent a PDU without room_id", origin=origin)
                continue
            by_room.setdefault(room_id, []).append(pdu)
        await gatherResults(
            [
                Deferred.fromCoroutine(self._process_room(origin, room_id, raw, results))
                for room_id, raw in by_room.items()
            ]
        )
        for edu in edus:
            await self._edus.on_edu(origin, edu)
        response: JsonDict = {"pdus": results}
        await self._txns.store_txn_response(
            origin, txn_id, response, int(self._clock.seconds() * 1000)
        )
        errors = sum(1 for r in results.values() if r)
        self.log.info(
            "transaction {txn_id} from {origin}: {n} PDUs ({errors} refused), {m} EDUs",
            txn_id=txn_id,
            origin=origin,
            n=len(pdus),
            errors=errors,
            m=len(edus),
        )
        return response

    async def _process_room(
        self,
        origin: str,
        room_id: str,
        raw: list[Any],
        results: dict[str, JsonDict],
        *,
        queued: bool = False,
    ) -> None:
        if not queued and self.joining.is_joining(room_id):
            self._queue_for_join(origin, room_id, raw, results)
            return
        version = await self._events.get_room_version(room_id)
        if version is None:
            for pdu in raw:
                eid = guess_event_id(pdu, DEFAULT_ROOM_VERSION)
                if eid is not None:
                    results[eid] = {"error": f"Unknown room {room_id}"}
            return
        if not await self._access.acl_allows(room_id, origin):
            for pdu in raw:
                eid = guess_event_id(pdu, version)
                if eid is not None:
                    results[eid] = {"error": "Server is banned from this room by its server ACL"}
            return
        checked: list[Event] = []
        # The room's PDUs are checked together: one batch of signature checks.
        for outcome in await self._checker.check_pdus(
            raw, version, origin, expected_room_id=room_id
        ):
            if isinstance(outcome, Event):
                checked.append(outcome)
            elif outcome.event_id is not None:
                results[outcome.event_id] = {"error": outcome.reason}
        checked.sort(key=lambda e: e.depth)
        for event in checked:
            results[event.event_id] = await self._handle_one(origin, event)

    def _queue_for_join(
        self, origin: str, room_id: str, raw: list[Any], results: dict[str, JsonDict]
    ) -> None:
        version = self.joining.room_version(room_id) or DEFAULT_ROOM_VERSION
        queued = 0
        for pdu in raw:
            eid = guess_event_id(pdu, version)
            if self.joining.offer(room_id, origin, pdu):
                queued += 1
                if eid is not None:
                    results[eid] = {}
            elif eid is not None:
                results[eid] = {"error": "Too many PDUs for a room this server is joining"}
        self.log.info(
            "{origin} sent {n} PDUs for {room_id}, which we are joining: queued {queued}",
            origin=origin, n=len(raw), room_id=room_id, queued=queued,
        )

    async def _process_queued(self, origin: str, room_id: str, raw: list[Any]) -> None:
        """PDUs queued during our join of ``room_id``, now that it is persisted."""
        results: dict[str, JsonDict] = {}
        await self._process_room(origin, room_id, raw, results, queued=True)
        errors = {eid: r for eid, r in results.items() if r}
        self.log.info(
            "processed {n} PDUs of {origin} queued during our join of {room_id}: {errors}",
            n=len(raw), origin=origin, room_id=room_id, errors=errors or "none refused",
        )

    async def _handle_one(self, origin: str, event: Event) -> JsonDict:
        sender_server = server_of(event.sender)
        if sender_server != origin and not await self._access.acl_allows(
            event.room_id, sender_server
        ):
            return {"error": "The sender's server is banned from this room by its server ACL"}
        try:
            persisted = await self._pdus.on_pdu(origin, event)
        except PDUError as e:
            return {"error": e.reason}
        except UnknownRoom:
            return {"error": f"Unknown room {event.room_id}"}
        except Exception:
            self.log.failure(
                "processing {event_id} from {origin}", event_id=event.event_id, origin=origin
            )
            return {"error": "Internal error while processing this PDU"}
        if persisted.rejected_reason is not None:
            return {"error": f"Rejected by the authorisation rules: {persisted.rejected_reason}"}
        return {}

