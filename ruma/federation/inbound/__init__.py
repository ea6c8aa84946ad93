"""Inbound federation: everything that happens to a PDU or EDU another server sends us.

One module per stage, in the order a PDU meets them:

- :mod:`.validate`: format per room version, size, prev/auth event count limits;
- :mod:`.signatures`: the required servers' signatures (keys valid at the event's time from
  room v5), then the content hash (a mismatch redacts, it does not reject);
- :mod:`.check`: :class:`PDUChecker` chaining the two (what the join engineer calls on a
  ``send_join`` answer, and :class:`~ruma.federation.event_fetcher.EventFetcher` on
  everything it fetches);
- :mod:`.missing`: fetching what an event refers to that we lack (auth events, prev events
  through ``get_missing_events``, the state at a gap through ``state_ids``);
- :mod:`.pdu`: :class:`InboundPDUHandler` taking one checked event to the room writer;
- :mod:`.edus`: typing, receipts, presence (device lists and to-device are acknowledged);
- :mod:`.transaction`: ``PUT /send/{txnId}``.

Using the checker::

    checker = PDUChecker(keyring)
    try:
        event = await checker.check_pdu(pdu_json, room_version, origin,
                                        expected_room_id=room_id)
    except PDUError as e:          # InvalidPDU, WrongRoom, BadSignature
        ...                        # e.reason is safe to send back; store nothing
    await room_writer.persist_event(event, ...)   # auth, soft-fail, state

A checked event that may refer to things we lack (a backfilled or pushed event) goes in
through ``hs.federation.pdus.on_pdu(origin, event)`` instead, which fetches missing prev
and auth events from ``origin`` first; ``hs.federation.gaps.persist_outliers(events)``
stores checked auth chains/state (e.g. a ``send_join`` answer) as outliers in auth order.
"""

from ruma.federation.inbound.check import PDUChecker
from ruma.federation.inbound.errors import BadSignature, InvalidPDU, PDUError, WrongRoom

__all__ = ["BadSignature", "InvalidPDU", "PDUChecker", "PDUError", "WrongRoom"]
