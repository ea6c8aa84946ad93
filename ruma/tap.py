"""``twistd ruma``: the options, and the one function that builds the whole homeserver.

:func:`build_homeserver` builds the object graph (stores, services, HTTP routers) and is
shared by :func:`makeService` and by ``tests/harness.py``, so tests exercise exactly what
runs in production. It is the place to wire in a new service: construct it here, put it on
:class:`Homeserver`, and (if it is long-lived) append it to ``Homeserver.services``.

:func:`makeService` is synchronous, as twistd wants. Everything asynchronous at startup
(schema migrations) happens in :meth:`HomeserverService.startService`; the listeners only
open once the database is ready.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.iweb import IAgent, IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

import ruma
from ruma.accounts import AccountService, PasswordHasher, UserInteractiveAuth, run_inline
from ruma.accounts.passwords import ThreadRunner
from ruma.admin.register import ServerVersion, SharedSecretRegistration
from ruma.appservice.pusher import AppserviceClient
from ruma.appservice.service import AppserviceServices
from ruma.bridges.base import BridgeContext, build_bridges
from ruma.client.account import AccountEndpoints
from ruma.client.admin import AdminEndpoints
from ruma.client.appservice_routes import AppserviceEndpoints
from ruma.client.auth import Authenticator
from ruma.client.devices import DeviceEndpoints
from ruma.client.directory import DirectoryEndpoints
from ruma.client.discovery import DiscoveryRoomEndpoints
from ruma.client.keys import register_e2ee_routes
from ruma.client.media import MediaEndpoints, MediaRouter
from ruma.client.media_remote import (
    FederationMediaSource,
    SafeUrlFetcher,
    install_federation_media_routes,
)
from ruma.client.profile import ProfileEndpoints
from ruma.client.push import PushEndpoints
from ruma.client.relations import RelationEndpoints
from ruma.client.rooms import RoomEndpoints
from ruma.client.router import ClientRouter, write_json
from ruma.client.search import SearchEndpoints
from ruma.client.sessions import SessionEndpoints, parse_session_config
from ruma.client.sync import register_sync_routes
from ruma.client.versions import DiscoveryEndpoints
from ruma.client.voip import VoipEndpoints, parse_turn_config
from ruma.config import ConfigError, HomeserverConfig, ListenerConfig, generate_config, load_config
from ruma.e2ee.remote import FederationKeyQuerier
from ruma.e2ee.service import E2EEServices
from ruma.errors import Codes
from ruma.federation.http import DEFAULT_IP_RANGE_DENYLIST, IPRangeFilter
from ruma.federation.room_directory import FederationRoomDirectory
from ruma.federation.rooms_wiring import RoomFederation, wire_from_homeserver
from ruma.federation.sender import FederationSender, build_federation_sender
from ruma.federation.sender.device_edus import add_device_edu_sources
from ruma.federation.service import FederationServices
from ruma.media.config import parse_media_config
from ruma.media.repository import MediaRepository
from ruma.protocol.signing import (
    SigningKey,
    generate_signing_key,
    read_signing_keys,
    write_signing_keys,
)
from ruma.push.service import PushServices
from ruma.ratelimit import Ratelimiter
from ruma.rooms.discovery import DiscoveryHandler
from ruma.rooms.serialize import EventSerializer
from ruma.rooms.service import RoomServices
from ruma.search.handler import SearchHandler
from ruma.storage.accounts import AccountStore
from ruma.storage.database import Database, SchemaTooNew
from ruma.storage.discovery import DiscoveryStore
from ruma.storage.media import MediaStore
from ruma.storage.search import SearchStore
from ruma.storage.sessions import SessionStore
from ruma.sync.service import SyncServices

log = Logger(namespace="ruma.tap")

DEFAULT_CONFIG = "homeserver.yaml"
DEFAULT_DATA_DIR = "ruma-data"


@attrs.define
class Homeserver:
    """Everything one Ruma process is made of. Built by :func:`build_homeserver` only."""

    config: HomeserverConfig
    reactor: Any
    clock: IReactorTime
    db: Database
    signing_key: SigningKey
    account_store: AccountStore
    accounts: AccountService
    uia: UserInteractiveAuth
    auth: Authenticator
    client: ClientRouter
    client_resource: IResource
    discovery: DiscoveryEndpoints
    # Filled in by the federation work; a listener naming 'federation' or 'keys' serves
    # nothing under those prefixes until then.
    federation_resource: IResource | None = None
    keys_resource: IResource | None = None
    media_resource: IResource | None = None
    # The media repository (ruma.media) and its federation routes (/_matrix/federation/v1/media).
    media: MediaRepository | None = None
    federation_media_resource: IResource | None = None
    # The event bus (sync_services.bus), sync and the ephemeral/per-user endpoints.
    sync_services: SyncServices | None = None
    # Federation (ruma.federation.service): outbound client, keyring, inbound PDU pipeline.
    federation: FederationServices | None = None
    # The federation sender (ruma.federation.sender): our PDUs and EDUs to other servers.
    federation_sender: FederationSender | None = None
    # Joins, invites, knocks, queries and backfill across servers (ruma.federation.rooms_wiring).
    room_federation: RoomFederation | None = None
    # The room service: the single writer of room events, and its client endpoints.
    rooms: RoomServices | None = None
    # Application services (ruma.appservice): registrations, pusher, queries, bridges.
    appservices: AppserviceServices | None = None
    # End-to-end encryption (ruma.e2ee): keys, to-device messages, device lists, backups.
    e2ee: E2EEServices | None = None
    # Push (ruma.push): rules, notifications and unread counts, HTTP pushers.
    push: PushServices | None = None
    # Bridge modules configured under ``bridges:`` (ruma.bridges.base).
    bridges: list[Any] = attrs.Factory(list)
    # Long-lived services, started (in order) once the database is ready.
    services: list[IService] = attrs.Factory(list)

    def root_resource(self, names: Sequence[str] = ("client", "federation", "keys")) -> IResource:
        """The resource a listener serving ``names`` puts at ``/``."""
        mounts: list[tuple[bytes, IResource]] = []
        if "federation" in names and self.federation_media_resource is not None:
            mounts.append((b"/_matrix/federation/v1/media/", self.federation_media_resource))
        if "federation" in names and self.federation_resource is not None:
            mounts.append((b"/_matrix/federation/", self.federation_resource))
        if "keys" in names and self.keys_resource is not None:
            mounts.append((b"/_matrix/key/", self.keys_resource))
        # Like Synapse, a client listener serves media too.
        if ("media" in names or "client" in names) and self.media_resource is not None:
            mounts.append((b"/_matrix/media/", self.media_resource))
            mounts.append((b"/_matrix/client/v1/media/", self.media_resource))
        fallback = self.client_resource if "client" in names else None
        return PrefixDispatcher(mounts, fallback)


def build_homeserver(
    config: HomeserverConfig,
    *,
    reactor: Any,
    clock: IReactorTime,
    database: Database,
    signing_key: SigningKey,
    run_in_thread: ThreadRunner | None = None,
    federation_agent: IAgent | None = None,
    appservice_agent: IAgent | None = None,
    push_agent: IAgent | None = None,
    url_preview_agent: IAgent | None = None,
) -> Homeserver:
    """Build the homeserver's object graph. Pure wiring: no I/O, nothing started.

    ``federation_agent``: the outbound federation ``IAgent`` (tests pass an in-memory one);
    by default a real one built from the config.
    """
    if run_in_thread is None:
        run_in_thread = run_inline
    account_store = AccountStore(database)
    hasher = PasswordHasher(config.bcrypt_rounds, run_in_thread)
    accounts = AccountService(account_store, clock, hasher, config.server_name)
    uia = UserInteractiveAuth(clock)
    auth = Authenticator(accounts)

    client = ClientRouter()
    discovery = DiscoveryEndpoints(config=config, auth=auth)
    discovery.register_routes(client)
    account_endpoints = AccountEndpoints(
        config=config, clock=clock, accounts=accounts, auth=auth, uia=uia
    )
    account_endpoints.register_routes(client)
    DeviceEndpoints(
        accounts=accounts, auth=auth, account_endpoints=account_endpoints
    ).register_routes(client)
    AdminEndpoints(accounts=accounts, auth=auth).register_routes(client)
    ServerVersion(f"Ruma {ruma.__version__}").register_routes(client)
    SharedSecretRegistration(
        shared_secret=config.registration_shared_secret,
        clock=clock,
        accounts=accounts,
        ratelimiter=Ratelimiter(
            clock, config.rc_registration.per_second, config.rc_registration.burst_count
        ),
    ).register_routes(client)

    hs = Homeserver(
        config=config,
        reactor=reactor,
        clock=clock,
        db=database,
        signing_key=signing_key,
        account_store=account_store,
        accounts=accounts,
        uia=uia,
        auth=auth,
        client=client,
        client_resource=client.resource(),
        discovery=discovery,
    )
    hs.rooms = RoomServices.build(
        db=database,
        clock=clock,
        server_name=config.server_name,
        signing_key=signing_key,
        profiles=account_store,
        default_room_version=config.default_room_version,
    )
    RoomEndpoints(
        clock=clock,
        auth=auth,
        rooms=hs.rooms,
        ratelimiter=Ratelimiter(clock, config.rc_message.per_second, config.rc_message.burst_count),
    ).register_routes(client)
    DirectoryEndpoints(auth=auth, rooms=hs.rooms).register_routes(client)
    ProfileEndpoints(auth=auth, profiles=hs.rooms.profiles).register_routes(client)
    hs.sync_services = SyncServices(clock=clock, db=database, events=hs.rooms.store)
    register_sync_routes(client, auth, hs.sync_services)
    hs.services.append(hs.sync_services)
    hs.push = build_push(hs, reactor, push_agent)
    hs.federation = FederationServices.build(
        config=config,
        reactor=reactor,
        clock=clock,
        db=database,
        signing_key=signing_key,
        store=hs.rooms.store,
        writer=hs.rooms.writer,
        typing=hs.sync_services.typing,
        receipts=hs.sync_services.receipt_store,
        presence=hs.sync_services.presence_store,
        agent=federation_agent,
    )
    hs.federation_resource = hs.keys_resource = hs.federation.resource
    hs.services.append(hs.federation.pruner)
    whitelist = hs.federation.config.domain_whitelist
    hs.federation_sender = build_federation_sender(
        db=database,
        bus=hs.sync_services.bus,
        clock=clock,
        server_name=config.server_name,
        events=hs.rooms.store,
        client=hs.federation.client,
        typing=hs.sync_services.typing,
        receipts=hs.sync_services.receipt_store,
        presence=hs.sync_services.presence_store if config.presence_enabled else None,
        allowed=whitelist.__contains__ if whitelist is not None else None,
    )
    hs.federation.authenticator.add_origin_listener(hs.federation_sender.peer_is_back)
    hs.services.append(hs.federation_sender)
    hs.e2ee = E2EEServices.build(
        db=database,
        clock=clock,
        server_name=config.server_name,
        events=hs.rooms.store,
        remote=FederationKeyQuerier(hs.federation.client),
    )
    hs.e2ee.attach_to_sync(hs.sync_services.sync, hs.sync_services.notifier)
    hs.federation.edus.devices = hs.e2ee.inbound_edus
    add_device_edu_sources(hs.federation_sender, hs.e2ee.store)
    register_e2ee_routes(client, auth, hs.e2ee, account_endpoints)
    hs.room_federation = wire_from_homeserver(hs)
    hs.media = build_media(hs, reactor, run_in_thread, url_preview_agent)
    build_sessions(hs, account_endpoints)
    VoipEndpoints(config=parse_turn_config(config), clock=clock, auth=auth).register_routes(client)
    hs.appservices = build_appservices(
        config,
        reactor=reactor,
        clock=clock,
        database=database,
        accounts=accounts,
        rooms=hs.rooms,
        sync=hs.sync_services,
        agent=appservice_agent,
    )
    hs.bridges = list(build_bridges(BridgeContext(
        config=config, reactor=reactor, clock=clock, db=database, appservices=hs.appservices,
        rooms=hs.rooms,
    )))
    if len(hs.appservices.registry):
        # Only with registrations: without any, login flows stay as they were.
        auth.appservices = hs.appservices.auth
    AppserviceEndpoints(clock=clock, auth=auth, appservices=hs.appservices).register_routes(
        client
    )
    hs.services.extend(hs.appservices.services)
    hs.services.extend(b.service for b in hs.bridges)
    build_room_extras(hs)
    return hs


def build_room_extras(hs: Homeserver) -> None:
    """Relations and threads (and their bundled aggregations in /sync), search, discovery
    (public rooms, user directory, spaces, upgrades, reports, timestamp_to_event)."""
    assert hs.rooms is not None and hs.sync_services is not None
    RelationEndpoints(clock=hs.clock, auth=hs.auth, rooms=hs.rooms).register_routes(hs.client)
    hs.sync_services.sync.relations = hs.rooms.relations
    SearchEndpoints(
        clock=hs.clock,
        auth=hs.auth,
        search=SearchHandler(hs.rooms.store, SearchStore(hs.db), hs.rooms.reader),
        serializer=EventSerializer(hs.rooms.store, hs.rooms.relations),
    ).register_routes(hs.client)
    discovery = DiscoveryHandler(hs.rooms, DiscoveryStore(hs.db), hs.clock, hs.config.server_name)
    if hs.federation is not None:
        discovery.remote = FederationRoomDirectory(hs.federation.client)
    DiscoveryRoomEndpoints(
        auth=hs.auth, accounts=hs.accounts, discovery=discovery
    ).register_routes(hs.client)


def build_sessions(hs: Homeserver, account_endpoints: AccountEndpoints) -> SessionEndpoints:
    """Login tokens, refresh tokens, OpenID tokens, auth_metadata (ruma.client.sessions)."""
    assert hs.federation is not None
    config = parse_session_config(hs.config)
    sessions = SessionEndpoints(
        config=config,
        server_name=hs.config.server_name,
        accounts=hs.accounts,
        auth=hs.auth,
        account_endpoints=account_endpoints,
        store=SessionStore(hs.db),
    )
    sessions.register_routes(hs.client)
    sessions.register_federation_routes(hs.federation.router)
    account_endpoints.sessions = sessions
    hs.discovery.login_token_enabled = config.login_token_enabled
    return sessions


def build_media(
    hs: Homeserver, reactor: Any, run_in_thread: ThreadRunner, agent: IAgent | None
) -> MediaRepository:
    """The media repository, its client routes and its federation routes."""
    assert hs.federation is not None
    config = parse_media_config(hs.config)
    deny = config.url_preview_ip_range_blacklist
    fetcher = SafeUrlFetcher(
        reactor,
        hs.clock,
        IPRangeFilter(
            deny=DEFAULT_IP_RANGE_DENYLIST if deny is None else deny,
            allow=config.url_preview_ip_range_whitelist,
        ),
        agent=agent,
    )
    media = MediaRepository(
        config=config,
        store=MediaStore(hs.db),
        clock=hs.clock,
        server_name=hs.config.server_name,
        run_in_thread=run_in_thread,
        remote=FederationMediaSource(hs.federation.client, fetcher),
        url_fetcher=fetcher,
    )
    router = MediaRouter()
    MediaEndpoints(auth=hs.auth, media=media).register_routes(router)
    hs.media_resource = router.resource()
    federation_router = MediaRouter()
    install_federation_media_routes(federation_router, hs.federation.authenticator, media)
    hs.federation_media_resource = federation_router.resource()
    return media


def build_push(hs: Homeserver, reactor: Any, agent: IAgent | None) -> PushServices:
    """Push rules, notification counts (into /sync) and HTTP pushers (``agent``: outbound)."""
    from twisted.web.client import Agent, HTTPConnectionPool

    assert hs.sync_services is not None and hs.rooms is not None
    if agent is None:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=True))
    push = PushServices.build(
        db=hs.db,
        clock=hs.clock,
        bus=hs.sync_services.bus,
        events=hs.rooms.store,
        account_data=hs.sync_services.account_data_store,
        agent=agent,
    )
    hs.sync_services.sync.push = push
    PushEndpoints(auth=hs.auth, push=push).register_routes(hs.client)
    hs.services.extend(push.services)
    return push


def build_appservices(
    config: HomeserverConfig,
    *,
    reactor: Any,
    clock: IReactorTime,
    database: Database,
    accounts: AccountService,
    rooms: RoomServices,
    sync: SyncServices,
    agent: IAgent | None,
) -> AppserviceServices:
    """The appservice support, from ``app_service_config_files`` (``ConfigError`` if bad)."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    if agent is None:
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=True))
    return AppserviceServices.from_files(
        config.app_service_config_files,
        server_name=config.server_name,
        db=database,
        bus=sync.bus,
        clock=clock,
        accounts=accounts,
        rooms=rooms,
        client=AppserviceClient(HTTPClient(agent), clock),
        typing=sync.typing,
        receipts=sync.receipt_store,
        presence=sync.presence_store if config.presence_enabled else None,
    )


class PrefixDispatcher(Resource):
    """Hands each request, path untouched, to the resource mounted at its path prefix."""

    isLeaf = True

    def __init__(self, mounts: list[tuple[bytes, IResource]], fallback: IResource | None):
        super().__init__()  # type: ignore[no-untyped-call]
        self._mounts = mounts
        self._fallback = fallback

    def render(self, request: IRequest) -> bytes | int:
        path: bytes = request.path
        for prefix, resource in self._mounts:
            if path.startswith(prefix) or path + b"/" == prefix:
                return resource.render(request)  # type: ignore[no-any-return]
        if self._fallback is not None:
            return self._fallback.render(request)  # type: ignore[no-any-return]
        return write_json(
            request, 404, {"errcode": Codes.UNRECOGNIZED.value, "error": "Unrecognized request"}
        )


# -- running it ----------------------------------------------------------------------------


class Options(usage.Options):
    synopsis = "[-c homeserver.yaml]"
    longdesc = (
        "Run the Ruma Matrix homeserver. Without -c it uses ./homeserver.yaml, creating one "
        "(server name 'localhost', data in ./ruma-data) if it does not exist yet."
    )
    optParameters = [
        ["config", "c", None, "Path to homeserver.yaml"],
    ]


class ForwardedRequest(Request):
    """A request behind a trusted reverse proxy: the client is the X-Forwarded-For address."""

    def getClientAddress(self) -> Any:
        from twisted.internet.address import IPv4Address, IPv6Address

        fwd = self.getHeader(b"X-Forwarded-For")
        if fwd:
            ip = fwd.split(b",")[0].strip().decode("ascii", "replace")
            if ":" in ip:
                return IPv6Address("TCP", ip, 0)
            return IPv4Address("TCP", ip, 0)
        return super().getClientAddress()  # type: ignore[no-untyped-call]

    def isSecure(self) -> bool:
        proto = self.getHeader(b"X-Forwarded-Proto")
        if proto is not None:
            return proto.lower() == b"https"
        return bool(super().isSecure())  # type: ignore[no-untyped-call]


def _access_log(timestamp: str, request: Request) -> str:
    """Combined-log-style line with any access token in the query string blanked out."""
    uri = request.uri.decode("ascii", "replace")
    if "access_token=" in uri:
        import re

        uri = re.sub(r"access_token=[^&]*", "access_token=<redacted>", uri)
    ua = (request.getHeader(b"User-Agent") or b"-").decode("utf-8", "replace")
    return '{ip} "{method} {uri} {proto}" {code} {length} "{ua}"'.format(
        ip=request.getClientAddress().host if hasattr(request.getClientAddress(), "host") else "-",
        method=request.method.decode("ascii", "replace"),
        uri=uri,
        proto=request.clientproto.decode("ascii", "replace"),
        code=request.code,
        length=request.sentLength or "-",
        ua=ua,
    )


def make_site(resource: IResource, listener: ListenerConfig) -> Site:
    site = Site(resource, logFormatter=_access_log)
    if listener.x_forwarded:
        site.requestFactory = ForwardedRequest
    site.displayTracebacks = False
    return site


class ListenerService(Service):
    """Listens on every bind address of one configured listener."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        listener: ListenerConfig,
        site: Site,
        tls_context: Any = None,
    ) -> None:
        self._reactor = reactor
        self._listener = listener
        self._site = site
        self._tls = tls_context
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        listened_v6_any = False
        for address in self._listener.bind_addresses:
            try:
                if self._tls is not None:
                    port = self._reactor.listenSSL(
                        self._listener.port, self._site, self._tls, interface=address
                    )
                else:
                    port = self._reactor.listenTCP(self._listener.port, self._site, interface=address)
            except Exception as e:
                # '::' is dual-stack on most systems, so 0.0.0.0 on the same port is taken.
                if address == "0.0.0.0" and listened_v6_any:
                    self.log.info(
                        "not listening on 0.0.0.0:{port} separately: '::' covers IPv4 here",
                        port=self._listener.port,
                    )
                    continue
                # Hosts (and containers) without IPv6 cannot bind '::1' or '::': carry on
                # with the other addresses, as long as one of them works.
                if ":" in address and _no_ipv6(e):
                    self.log.warn(
                        "IPv6 is not available here: not listening on {address} port {port}",
                        address=address,
                        port=self._listener.port,
                    )
                    continue
                raise ListenError(
                    f"cannot listen on {address} port {self._listener.port}: {e}"
                ) from e
            if address == "::":
                listened_v6_any = True
            self.ports.append(port)
            self.log.info(
                "listening on {address} port {port} for {names}",
                address=address,
                port=port.getHost().port,
                names=", ".join(self._listener.resources),
            )
        if not self.ports:
            raise ListenError(
                f"cannot listen on any of {', '.join(self._listener.bind_addresses)} "
                f"port {self._listener.port}"
            )

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]
        ports, self.ports = self.ports, []
        return DeferredList([Deferred.fromCoroutine(_stop(p)) for p in ports]).addCallback(
            lambda _: None
        )


def _no_ipv6(error: Exception) -> bool:
    socket_error = getattr(error, "socketError", None)
    return isinstance(socket_error, OSError) and socket_error.errno in (
        errno.EAFNOSUPPORT,
        errno.EADDRNOTAVAIL,
    )


async def _stop(port: IListeningPort) -> None:
    # IListeningPort.stopListening "may return a Deferred".
    result = port.stopListening()
    if isinstance(result, Deferred):
        await result


class ListenError(Exception):
    pass


class HomeserverService(MultiService):
    """Prepares the database, then starts the children (services, then listeners)."""

    log = Logger()

    def __init__(self, hs: Homeserver, on_fatal: Callable[[str], None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.hs = hs
        self._on_fatal = on_fatal
        self._starting: Deferred[None] | None = None
        self.ready: Deferred[None] = Deferred()
        self._closed = False

    def startService(self) -> None:
        # Do not start the children yet: they must wait for the schema.
        Service.startService(self)
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addErrback(self._start_failed)

    async def _start(self) -> None:
        version = await self.hs.db.prepare()
        self.log.info("database ready (schema version {version})", version=version)
        for svc in self:
            svc.startService()
        self.log.info(
            "Ruma is serving {server_name}", server_name=self.hs.config.server_name
        )
        self.ready.callback(None)

    def _start_failed(self, failure: Any) -> None:
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError):
            return
        if failure.check(SchemaTooNew):
            message = f"refusing to start: {failure.value}"
        elif failure.check(ListenError):
            message = f"refusing to start: {failure.value}"
        else:
            self.log.failure("startup failed", failure)
            message = f"startup failed: {failure.getErrorMessage()}"
        self.log.critical("{message}", message=message)
        self._on_fatal(message)
        if not self.ready.called:
            self.ready.errback(failure)

    def stopService(self) -> Deferred[Any]:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        Service.stopService(self)
        running = [svc for svc in reversed(list(self)) if svc.running]
        ds = [Deferred.fromCoroutine(_stop_service(svc)) for svc in running]

        def close(_: Any) -> None:
            if not self._closed:
                self._closed = True
                self.hs.db.close()

        return DeferredList(ds).addCallback(close)


async def _stop_service(svc: IService) -> None:
    result = svc.stopService()
    if isinstance(result, Deferred):
        await result


class PidFileService(Service):
    """Writes the process id to ``pid_file`` while running (config's ``pid_file``)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        with open(self._path, "w") as f:
            f.write(f"{os.getpid()}\n")

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass


def _config_name(config: HomeserverConfig) -> str:
    return os.path.basename(config.config_path) if config.config_path else "config"


def ensure_signing_key(config: HomeserverConfig) -> SigningKey:
    """Read the signing key, creating it (mode 0600) if the file does not exist."""
    path = config.signing_key_path
    try:
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            key = generate_signing_key("a_" + os.urandom(3).hex())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(write_signing_keys([key]))
            log.info("generated a new signing key in {path}", path=path)
            return key
        with open(path) as f:
            keys = read_signing_keys(f.read())
    except OSError as e:
        raise ConfigError(
            f"{_config_name(config)}: signing_key_path: cannot use {path}: {e.strerror}"
        ) from None
    except ValueError as e:
        raise ConfigError(
            f"{_config_name(config)}: signing_key_path: {path} is not a signing key file: {e}"
        ) from None
    if not keys:
        raise ConfigError(f"{_config_name(config)}: signing_key_path: {path} holds no key")
    return keys[0]


def open_database(config: HomeserverConfig, reactor: Any) -> Database:
    if config.database.is_sqlite:
        path = str(config.database.args["database"])
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return Database.sqlite(reactor, path)
    try:
        __import__(config.database.name)
    except ImportError:
        raise ConfigError(
            f"database.name: {config.database.name} is not installed "
            f"(pip install {'psycopg2-binary' if config.database.name == 'psycopg2' else 'psycopg'})"
        ) from None
    return Database.postgres(reactor, postgres_args(config), module=config.database.name)


def postgres_args(config: HomeserverConfig) -> dict[str, Any]:
    """Connection arguments for the driver (Synapse's ``database`` key is ``dbname``)."""
    args = dict(config.database.args)
    if "database" in args and "dbname" not in args:
        args["dbname"] = args.pop("database")
    return args


def tls_context(config: HomeserverConfig) -> Any:
    from twisted.internet import ssl

    assert config.tls_certificate_path and config.tls_private_key_path
    pems: dict[str, bytes] = {}
    for key, path in (
        ("tls_certificate_path", config.tls_certificate_path),
        ("tls_private_key_path", config.tls_private_key_path),
    ):
        try:
            with open(path, "rb") as f:
                pems[key] = f.read()
        except OSError as e:
            raise ConfigError(
                f"{_config_name(config)}: {key}: cannot read {path}: {e.strerror}"
            ) from None
    cert_pem = pems["tls_certificate_path"]
    try:
        cert = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + pems["tls_private_key_path"])
        chain = [ssl.Certificate.loadPEM(c).original for c in _pem_blocks(cert_pem)[1:]]
        return ssl.CertificateOptions(
            privateKey=cert.privateKey.original,
            certificate=cert.original,
            extraCertChain=chain or None,
        )
    except Exception as e:
        raise ConfigError(
            f"{_config_name(config)}: tls_certificate_path: with tls_private_key_path, not a "
            f"usable PEM certificate and key ({e})"
        ) from None


def _pem_blocks(pem: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    return [b + end for b in pem.split(end) if b"-----BEGIN CERTIFICATE-----" in b]


def resolve_config_path(options: Options | dict[str, Any], cwd: str) -> str:
    """The config file to use, generating ./homeserver.yaml when none was given or exists."""
    path = options.get("config")
    if path:
        return str(path)
    path = os.path.join(cwd, DEFAULT_CONFIG)
    if not os.path.exists(path):
        data_dir = os.path.join(cwd, DEFAULT_DATA_DIR)
        os.makedirs(data_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(generate_config("localhost", data_dir))
        log.warn(
            "no config given and none at {path}: generated one for server name 'localhost' "
            "with its data in {data_dir}; edit it and restart",
            path=path,
            data_dir=data_dir,
        )
    return path


def make_service_from_config(
    config: HomeserverConfig,
    reactor: Any,
    on_fatal: Callable[[str], None],
    *,
    database: Database | None = None,
) -> HomeserverService:
    """The service tree for ``config``; ``on_fatal(message)`` is called if startup fails."""
    # Everything read from files first, so a mistake is reported before anything is opened.
    signing_key = ensure_signing_key(config)
    tls = tls_context(config) if any(li.tls for li in config.listeners) else None
    db = database if database is not None else open_database(config, reactor)

    def run_in_thread(func: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), func, *args)

    try:
        hs = build_homeserver(
            config,
            reactor=reactor,
            clock=reactor,
            database=db,
            signing_key=signing_key,
            run_in_thread=run_in_thread,
        )
    except BaseException:
        db.close()
        raise
    top = HomeserverService(hs, on_fatal)
    if config.pid_file:
        PidFileService(config.pid_file).setServiceParent(top)  # type: ignore[no-untyped-call]
    for svc in hs.services:
        svc.setServiceParent(top)
    for listener in config.listeners:
        site = make_site(hs.root_resource(listener.resources), listener)
        service = ListenerService(reactor, listener, site, tls if listener.tls else None)
        service.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top


def makeService(options: Options | dict[str, Any]) -> MultiService:
    """twistd's entry point: load (or create) the config and build the service tree."""
    from twisted.internet import reactor

    path = resolve_config_path(options, os.getcwd())
    try:
        config = load_config(path)
        if not config.listeners:
            raise ConfigError(f"{os.path.basename(path)}: listeners: no listeners configured")
        return make_service_from_config(config, reactor, _stop_reactor(reactor))
    except ConfigError as e:
        raise SystemExit(f"ruma: {e}") from None


def _stop_reactor(reactor: IReactorCore) -> Callable[[str], None]:
    def stop(message: str) -> None:
        sys.stderr.write(f"ruma: {message}\n")
        if reactor.running:
            reactor.stop()

    return stop

