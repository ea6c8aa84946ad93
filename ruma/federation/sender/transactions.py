"""Turning a destination's queue into ``PUT /_matrix/federation/v1/send/{txnId}`` calls.

:meth:`Transmitter.transmit` sends one transaction to one destination:

1. if a transaction is pending in the database (sent before, never acknowledged: the peer
   was down, or we restarted), send it again unchanged: same ID, same body;
2. otherwise read the queue after the acknowledged position and cut a batch of at most
   ``MAX_PDUS`` PDUs and ``MAX_EDUS`` EDUs, in stream order (:func:`build_batch`), record it
   as pending (ID, bounds and body), then send it;
3. on a 200 answer, log the per-PDU errors it lists (they are the peer's verdicts on our
   events: retrying would not change them) and acknowledge: the destination's position moves
   to the batch's upper bound.

Errors: no answer, a 5xx, 401, 404 or 429 raise (the destination backs off and sends the
same transaction again later); 400, 403 and 413 mean the peer will never take this
transaction, so it is logged and dropped rather than blocking the destination forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.federation.http import FederationError
from ruma.federation.sender.destination import RetryLater
from ruma.storage.federation_sender import FederationSenderStore, PendingTransaction, QueuedItem

__all__ = ["MAX_EDUS", "MAX_PDUS", "Batch", "TransactionClient", "Transmitter", "build_batch"]

MAX_PDUS = 50
MAX_EDUS = 100
# Rows read from the queue per batch: enough to fill a batch even when EDUs coalesce.
READ_AHEAD = MAX_PDUS + MAX_EDUS
# Answers meaning "this transaction will never be accepted": drop it and go on.
_PERMANENT = frozenset({400, 403, 413})


class TransactionClient(Protocol):
    """The part of :class:`ruma.federation.http.FederationClient` the sender uses."""

    async def put_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """What goes into one transaction: ``after < position <= upto``."""

    after: int
    upto: int
    pdus: tuple[Mapping[str, Any], ...]
    edus: tuple[Mapping[str, Any], ...]
    edu_expiry: tuple[int | None, ...] = ()


def build_batch(
    items: Sequence[QueuedItem],
    after: int,
    now_ms: int,
    *,
    max_pdus: int = MAX_PDUS,
    max_edus: int = MAX_EDUS,
) -> Batch | None:
    """Cut the next batch from queue rows (``items`` in order, all after ``after``).

    Rows of one stream position are never split across batches. Of the EDUs sharing a
    ``coalesce_key`` only the last is kept; expired EDUs and PDUs whose event is gone are
    left out (but still covered by the batch's bounds, so they are not read again).
    Returns None if ``items`` is empty.
    """
    if not items:
        return None
    groups: list[list[QueuedItem]] = []
    for item in items:
        if groups and groups[-1][0].position == item.position:
            groups[-1].append(item)
        else:
            groups.append([item])
    pdus: list[Mapping[str, Any]] = []
    edus: list[tuple[str | None, Mapping[str, Any], int | None]] = []
    keys: set[str] = set()
    upto = after
    for group in groups:
        g_pdus = [i.pdu for i in group if i.event_id is not None and i.pdu is not None]
        g_edus = [
            i
            for i in group
            if i.edu_type is not None and (i.expires_ms is None or i.expires_ms > now_ms)
        ]
        new_edus = sum(1 for i in g_edus if i.coalesce_key is None or i.coalesce_key not in keys)
        if upto != after and (
            len(pdus) + len(g_pdus) > max_pdus or len(edus) + new_edus > max_edus
        ):
            break
        pdus.extend(g_pdus)
        for i in g_edus:
            edu = {"edu_type": i.edu_type, "content": i.edu_content or {}}
            if i.coalesce_key is not None and i.coalesce_key in keys:
                edus = [e for e in edus if e[0] != i.coalesce_key]
            if i.coalesce_key is not None:
                keys.add(i.coalesce_key)
            edus.append((i.coalesce_key, edu, i.expires_ms))
        upto = group[0].position
    kept = edus[:max_edus]
    return Batch(
        after,
        upto,
        tuple(pdus[:max_pdus]),
        tuple(e for _, e, _ in kept),
        tuple(x for _, _, x in kept),
    )


def _without_expired(txn: PendingTransaction, now_ms: int) -> dict[str, Any]:
    """The transaction's body minus the EDUs that have expired since it was built."""
    body = dict(txn.body)
    edus = list(body.get("edus", ()))
    if txn.edu_expiry and len(txn.edu_expiry) == len(edus):
        body["edus"] = [
            e for e, expiry in zip(edus, txn.edu_expiry, strict=True)
            if expiry is None or expiry > now_ms
        ]
    body.setdefault("pdus", [])
    body.setdefault("edus", [])
    return body


class Transmitter:
    """Sends destinations' queued PDUs and EDUs, one transaction at a time."""

    log = Logger()

    def __init__(
        self,
        *,
        store: FederationSenderStore,
        client: TransactionClient,
        clock: IReactorTime,
        server_name: str,
        txn_timeout: float = 60.0,
        on_sent: Callable[[str, PendingTransaction], None] | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._clock = clock
        self.server_name = server_name
        self._timeout = txn_timeout
        self._on_sent = on_sent

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def transmit(self, destination: str) -> bool:
        """Deliver the destination's next transaction. False if nothing is queued."""
        state = await self._store.get_destination(destination)
        if state is None:
            return False
        txn = state.pending
        if txn is None:
            txn = await self._next_transaction(destination, state.last_acked_position)
            if txn is None:
                return False
        body = _without_expired(txn, self._now_ms())
        if not body["pdus"] and not body["edus"]:
            # Only ephemeral EDUs, all stale now: nothing worth sending.
            await self._store.ack_pending(destination, txn.txn_id)
            return True
        await self._send(destination, txn, body)
        return True

    async def _next_transaction(self, destination: str, after: int) -> PendingTransaction | None:
        while True:
            items = await self._store.read_queue(destination, after, READ_AHEAD)
            now = self._now_ms()
            batch = build_batch(items, after, now)
            if batch is None:
                return None
            if batch.pdus or batch.edus:
                break
            # Nothing sendable in these rows (expired typing, events since purged): skip them.
            await self._store.skip_to(destination, batch.upto)
            after = batch.upto
        txn = PendingTransaction(
            txn_id=f"{now}.{batch.after}-{batch.upto}",
            from_position=batch.after,
            to_position=batch.upto,
            body={
                "origin": self.server_name,
                "origin_server_ts": now,
                "pdus": list(batch.pdus),
                "edus": list(batch.edus),
            },
            edu_expiry=batch.edu_expiry,
        )
        await self._store.save_pending(destination, txn)
        return txn

    async def _send(
        self, destination: str, txn: PendingTransaction, body: Mapping[str, Any]
    ) -> None:
        path = f"/_matrix/federation/v1/send/{txn.txn_id}"
        try:
            answer = await self._client.put_json(destination, path, body, timeout=self._timeout)
        except FederationError as e:
            if e.status in _PERMANENT:
                self.log.error(
                    "{destination} refused transaction {txn_id} ({status} {errcode}): dropping"
                    " its {pdus} PDUs and {edus} EDUs",
                    destination=destination,
                    txn_id=txn.txn_id,
                    status=e.status,
                    errcode=e.errcode,
                    pdus=len(txn.body.get("pdus", ())),
                    edus=len(txn.body.get("edus", ())),
                )
                await self._store.ack_pending(destination, txn.txn_id)
                return
            retry_after = None
            if e.status == 429 and isinstance(e.body, dict):
                ms = e.body.get("retry_after_ms")
                if isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0:
                    retry_after = ms / 1000.0
            raise RetryLater(str(e), retry_after) from e
        self._log_pdu_errors(destination, txn, answer)
        await self._store.ack_pending(destination, txn.txn_id)
        self.log.debug(
            "delivered transaction {txn_id} to {destination}",
            txn_id=txn.txn_id,
            destination=destination,
        )
        if self._on_sent is not None:
            self._on_sent(destination, txn)

    def _log_pdu_errors(self, destination: str, txn: PendingTransaction, answer: Any) -> None:
        results = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(results, dict):
            return
        for event_id, result in results.items():
            if isinstance(result, dict) and "error" in result:
                self.log.warn(
                    "{destination} did not accept {event_id} (transaction {txn_id}): {error}",
                    destination=destination,
                    event_id=event_id,
                    txn_id=txn.txn_id,
                    error=str(result["error"])[:500],
                )
