"""Outbound federation: PDUs and EDUs to other servers, in transactions, surviving outages.

- :mod:`.sender`: :class:`FederationSender`, the durable bus subscriber deciding who is owed
  what, with one delivery loop per destination;
- :mod:`.destination`: that loop's retry schedule; the loop itself is the state machine of
  :mod:`ruma.delivery` (idle, sending, backing off, catching up), shared with appservices;
- :mod:`.transactions`: batching the queue into ``PUT /send/{txnId}``;
- :mod:`.edus`: typing, receipts and presence of local users;
- :mod:`.hosts`: which servers are in a room.

:func:`build_federation_sender` wires the standard EDU sources; ``ruma.tap`` calls it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from ruma.bus import EventBus
from ruma.federation.sender.destination import Backoff
from ruma.federation.sender.edus import (
    EduSource,
    OutboundEdu,
    PresenceEdus,
    ReceiptEdus,
    TypingEdus,
)
from ruma.federation.sender.sender import FederationSender
from ruma.federation.sender.transactions import TransactionClient
from ruma.handlers.typing import TypingHandler
from ruma.storage.database import Database
from ruma.storage.events import EventStore
from ruma.storage.federation_sender import FederationSenderStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import ReceiptStore

__all__ = [
    "Backoff",
    "EduSource",
    "FederationSender",
    "OutboundEdu",
    "build_federation_sender",
]


def build_federation_sender(
    *,
    db: Database,
    bus: EventBus,
    clock: IReactorTime,
    server_name: str,
    events: EventStore,
    client: TransactionClient,
    typing: TypingHandler | None = None,
    receipts: ReceiptStore | None = None,
    presence: PresenceStore | None = None,
    allowed: Callable[[str], bool] | None = None,
    backoff: Backoff | None = None,
) -> FederationSender:
    """The sender with the typing, receipt and presence sources of those given."""
    sender = FederationSender(
        bus=bus,
        clock=clock,
        server_name=server_name,
        events=events,
        store=FederationSenderStore(db),
        client=client,
        allowed=allowed,
        backoff=backoff,
    )
    if typing is not None:
        sender.add_edu_source(TypingEdus(typing, sender.hosts, server_name))
    if receipts is not None:
        sender.add_edu_source(ReceiptEdus(receipts, sender.hosts, server_name))
    if presence is not None:
        sender.add_edu_source(PresenceEdus(presence, events, sender.hosts, clock, server_name))
    return sender
