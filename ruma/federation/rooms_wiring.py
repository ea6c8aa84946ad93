"""Plugging federation into the rooms layer: membership, queries and backfill.

:func:`wire_room_federation` builds the joining side (:class:`FederationMembership`), the
resident side (:class:`ResidentMembership`), the queries (:class:`QueryServer` and
:class:`QueryClient`) and the :class:`Backfiller`; fills the rooms layer's seams
(``membership.remote``, ``aliases.remote``, ``profiles.remote``, ``reader.backfill``) and
registers the routes on the federation router. ``ruma.tap.build_homeserver`` calls it once
federation is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ruma.client.router import ClientRouter
from ruma.federation.backfill import Backfiller
from ruma.federation.event_fetcher import EventFetcher
from ruma.federation.inbound_auth import FederationAuthenticator
from ruma.federation.membership import (
    FederationJSON,
    FederationMembership,
    ResidentMembership,
    RoomAccessLike,
    VerifiesJSON,
)
from ruma.federation.membership_routes import install_membership_routes
from ruma.federation.queries import DeviceSource, QueryClient, QueryServer
from ruma.federation.query_routes import install_query_routes
from ruma.protocol.signing import SigningKey
from ruma.rooms.profile import ProfileSource
from ruma.rooms.service import RoomServices

__all__ = ["RoomFederation", "wire_room_federation"]


@dataclass(frozen=True, slots=True)
class RoomFederation:
    joining: FederationMembership
    resident: ResidentMembership
    queries: QueryServer
    query_client: QueryClient
    backfiller: Backfiller


def wire_room_federation(
    *,
    rooms: RoomServices,
    client: FederationJSON,
    fetcher: EventFetcher,
    keyring: VerifiesJSON,
    authenticator: FederationAuthenticator,
    router: ClientRouter,
    access: RoomAccessLike | None,
    profiles: ProfileSource,
    devices: DeviceSource,
    clock: IReactorTime,
    server_name: str,
    signing_key: SigningKey,
    relay: Callable[[str, str], Awaitable[None]] | None = None,
) -> RoomFederation:
    """``relay``: the federation sender's ``relay`` (memberships received by the resident
    side are passed on to the room's other servers)."""
    joining = FederationMembership(
        client=client,
        fetcher=fetcher,
        keyring=keyring,
        writer=rooms.writer,
        clock=clock,
        server_name=server_name,
        signing_key=signing_key,
    )
    resident = ResidentMembership(
        sender=rooms.sender,
        fetcher=fetcher,
        server_name=server_name,
        signing_key=signing_key,
        clock=clock,
        access=access,
        relay=relay,
    )
    queries = QueryServer(
        server_name=server_name,
        profiles=profiles,
        devices=devices,
        rooms=rooms.rooms,
        store=rooms.store,
        access=access,
    )
    query_client = QueryClient(client, server_name)
    backfiller = Backfiller(fetcher=fetcher, writer=rooms.writer, server_name=server_name)
    rooms.membership.remote = joining
    rooms.aliases.remote = query_client
    rooms.profiles.remote = query_client
    rooms.reader.backfill = backfiller
    install_membership_routes(router, authenticator, resident)
    install_query_routes(router, authenticator, queries)
    return RoomFederation(joining, resident, queries, query_client, backfiller)


def wire_from_homeserver(
    hs: Any, relay: Callable[[str, str], Awaitable[None]] | None = None
) -> RoomFederation:
    """:func:`wire_room_federation` from a built ``ruma.tap.Homeserver`` (whose
    ``federation`` and ``rooms`` are set, and ``federation_sender`` if there is one)."""
    fed = hs.federation
    sender = getattr(hs, "federation_sender", None)
    e2ee = getattr(hs, "e2ee", None)
    wired = wire_room_federation(
        rooms=hs.rooms,
        client=fed.client,
        fetcher=fed.fetcher,
        keyring=fed.keyring,
        authenticator=fed.authenticator,
        router=fed.router,
        access=fed.access,
        profiles=hs.account_store,
        devices=hs.account_store,
        clock=hs.clock,
        server_name=hs.config.server_name,
        signing_key=hs.signing_key,
        relay=relay if relay is not None else sender.relay if sender is not None else None,
    )
    if e2ee is not None:
        wired.queries.keys = e2ee.keys
        wired.queries.device_keys = e2ee.store
    return wired
