"""Federation's object graph, built from the config in one place for ``ruma.tap``.

:meth:`FederationServices.build` makes the outbound side (a
:class:`~ruma.federation.http.FederationAgent` resolving names with SRV and well-known look-
ups, checking TLS with the configured CAs and refusing denied IP ranges, and the signing
:class:`~ruma.federation.http.FederationClient`), the keyring, the inbound authenticator,
the PDU pipeline and the routes of ``/_matrix/federation`` and ``/_matrix/key``.

Other federation parts reuse what is here (``hs.federation``): ``client`` for outbound
requests, ``keyring``, ``checker`` (:class:`~ruma.federation.inbound.PDUChecker`),
``fetcher`` (:class:`~ruma.federation.event_fetcher.EventFetcher`), ``pdus``
(:class:`~ruma.federation.inbound.pdu.InboundPDUHandler`: a checked event into the room,
fetching what it lacks), ``gaps`` (outliers, state at a gap), ``access`` (ACLs, server in
room, visibility), ``authenticator`` and ``router`` (register more federation routes on it
with ``router.route_raw``; they are served by the federation listener).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent
from twisted.web.resource import IResource

from ruma.client.router import ClientRouter
from ruma.config import HomeserverConfig
from ruma.federation.access import RoomAccess
from ruma.federation.config import FederationConfig, parse_federation_config
from ruma.federation.discovery import ServerResolver
from ruma.federation.event_fetcher import EventFetcher
from ruma.federation.history import FederationHistory
from ruma.federation.history_routes import install_history_routes
from ruma.federation.http import FederationAgent, FederationClient, FederationTLS, IPRangeFilter
from ruma.federation.inbound.check import PDUChecker
from ruma.federation.inbound.edus import EDUHandler, TypingSink
from ruma.federation.inbound.missing import GapFiller
from ruma.federation.inbound.pdu import InboundPDUHandler
from ruma.federation.inbound.pruning import TransactionPruner
from ruma.federation.inbound.routes import install_send_route
from ruma.federation.inbound.transaction import TransactionHandler
from ruma.federation.inbound_auth import FederationAuthenticator
from ruma.federation.keyring import Keyring, TrustedKeyServer
from ruma.federation.network import make_srv_lookup, make_well_known_fetcher
from ruma.federation.server import install_key_routes, install_version_route
from ruma.protocol.signing import SigningKey
from ruma.rooms.persistence import RoomWriter
from ruma.storage.database import Database
from ruma.storage.events import EventStore
from ruma.storage.federation import FederationInboundStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import ReceiptStore
from ruma.storage.server_keys import ServerKeyStore

__all__ = ["FederationServices", "make_federation_agent"]


def make_federation_agent(reactor: Any, clock: IReactorTime, config: FederationConfig) -> IAgent:
    """The real outbound agent: discovery, TLS per config, the IP range filter."""
    tls = FederationTLS(verify=config.verify_certificates, ca_pems=config.custom_ca_pems)
    ip_filter = IPRangeFilter(deny=config.ip_range_blacklist, allow=config.ip_range_whitelist)
    resolver = ServerResolver(
        clock, make_well_known_fetcher(reactor, tls, ip_filter), make_srv_lookup(reactor)
    )
    return FederationAgent(reactor, resolver, tls, ip_filter)


@dataclass(frozen=True, slots=True)
class FederationServices:
    config: FederationConfig
    client: FederationClient
    keyring: Keyring
    authenticator: FederationAuthenticator
    checker: PDUChecker
    fetcher: EventFetcher
    access: RoomAccess
    gaps: GapFiller
    pdus: InboundPDUHandler
    edus: EDUHandler
    transactions: TransactionHandler
    history: FederationHistory
    # A service: ruma.tap starts it with the others (it forgets week-old transaction IDs).
    pruner: TransactionPruner
    router: ClientRouter
    resource: IResource

    @classmethod
    def build(
        cls,
        *,
        config: HomeserverConfig,
        reactor: Any,
        clock: IReactorTime,
        db: Database,
        signing_key: SigningKey,
        store: EventStore,
        writer: RoomWriter,
        typing: TypingSink | None = None,
        receipts: ReceiptStore | None = None,
        presence: PresenceStore | None = None,
        agent: IAgent | None = None,
    ) -> FederationServices:
        fed = parse_federation_config(config)
        server_name = config.server_name
        if agent is None:
            agent = make_federation_agent(reactor, clock, fed)
        client = FederationClient(agent, clock, server_name, signing_key)
        keyring = Keyring(
            clock,
            ServerKeyStore(db),
            client,
            server_name=server_name,
            signing_keys=[signing_key],
            trusted_key_servers=[
                TrustedKeyServer(t.server_name, t.verify_keys) for t in fed.trusted_key_servers
            ],
        )
        authenticator = FederationAuthenticator(
            clock, keyring, server_name, domain_whitelist=fed.domain_whitelist
        )
        checker = PDUChecker(keyring)
        fetcher = EventFetcher(client, checker)
        access = RoomAccess(store)
        gaps = GapFiller(store, writer, fetcher)
        pdus = InboundPDUHandler(store, writer, gaps)
        txn_store = FederationInboundStore(db)
        edus = EDUHandler(
            clock=clock,
            events=store,
            access=access,
            typing=typing,
            receipts=receipts,
            presence=presence,
            rooms=txn_store,
        )
        transactions = TransactionHandler(
            clock=clock,
            txns=txn_store,
            events=store,
            checker=checker,
            pdus=pdus,
            edus=edus,
            access=access,
        )
        history = FederationHistory(
            clock=clock, store=store, access=access, server_name=server_name
        )
        router = ClientRouter()
        install_key_routes(router, keyring)
        install_version_route(router)
        install_send_route(router, authenticator, transactions)
        install_history_routes(router, authenticator, history)
        return cls(
            config=fed,
            client=client,
            keyring=keyring,
            authenticator=authenticator,
            checker=checker,
            fetcher=fetcher,
            access=access,
            gaps=gaps,
            pdus=pdus,
            edus=edus,
            transactions=transactions,
            history=history,
            pruner=TransactionPruner(clock, txn_store),
            router=router,
            resource=router.resource(),
        )
