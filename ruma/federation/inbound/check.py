"""The whole pre-auth pipeline for one PDU: :meth:`PDUChecker.check_pdu`.

Format and size (:mod:`.validate`), then signatures and the content hash
(:mod:`.signatures`). What comes out is an :class:`~ruma.protocol.events.Event` that may be
handed to :meth:`ruma.rooms.persistence.RoomWriter.persist_event` (which does the auth
checks); what fails raises a :class:`~ruma.federation.inbound.errors.PDUError` and must be
stored nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

from ruma.federation.inbound.errors import PDUError
from ruma.federation.inbound.signatures import (
    CachedKeys,
    KeySource,
    check_hash,
    check_many_signatures,
)
from ruma.federation.inbound.validate import parse_pdu
from ruma.protocol.events import Event
from ruma.protocol.room_versions import RoomVersion

__all__ = ["PDUChecker"]


class PDUChecker:
    """Checks PDUs from other servers before anything else looks at them."""

    log = Logger()

    def __init__(self, keys: KeySource) -> None:
        self._keys = CachedKeys(keys)

    async def check_pdu(
        self,
        pdu_json: Any,
        room_version: RoomVersion,
        origin: str | None = None,
        *,
        expected_room_id: str | None = None,
        check_limits: bool = True,
    ) -> Event:
        """Validate, check signatures and hash; return the event (redacted on a hash mismatch).

        ``origin`` is the server the PDU came from (for logs; the ACL and room checks are
        the caller's). ``expected_room_id`` refuses events of another room.
        ``check_limits=False`` for backfilled/historical events (no prev/auth count limit).
        Raises :class:`~ruma.federation.inbound.errors.InvalidPDU`, ``WrongRoom`` or
        ``BadSignature``.
        """
        (outcome,) = await self.check_pdus(
            [pdu_json],
            room_version,
            origin,
            expected_room_id=expected_room_id,
            check_limits=check_limits,
        )
        if isinstance(outcome, PDUError):
            raise outcome
        return outcome

    async def check_pdus(
        self,
        pdus: Iterable[Any],
        room_version: RoomVersion,
        origin: str | None = None,
        *,
        expected_room_id: str | None = None,
        check_limits: bool = True,
    ) -> list[Event | PDUError]:
        """:meth:`check_pdu` for many PDUs (a state or auth chain, a backfill, missing
        events): each one's event or error, in order. The signatures are checked as one
        batch once every key is at hand, which is faster than one at a time."""
        results: list[Event | PDUError] = []
        for pdu_json in pdus:
            try:
                results.append(
                    parse_pdu(
                        pdu_json,
                        room_version,
                        expected_room_id=expected_room_id,
                        check_limits=check_limits,
                    )
                )
            except PDUError as e:
                results.append(e)
        parsed = [r for r in results if isinstance(r, Event)]
        errors = iter(await check_many_signatures(parsed, self._keys))
        out: list[Event | PDUError] = []
        for result in results:
            if isinstance(result, Event):
                error = next(errors)
                if error is None:
                    out.append(check_hash(result))
                    continue
                result = error
            self.log.info(
                "refused PDU {event_id} from {origin}: {reason}",
                event_id=result.event_id,
                origin=origin,
                reason=result.reason,
            )
            out.append(result)
        return out
