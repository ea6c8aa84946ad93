"""Wiring of the application-service support: one object ``ruma.tap`` builds and plugs in.

:class:`AppserviceServices` loads the registrations, and provides

- ``auth``: the :class:`~ruma.client.auth.AppserviceAuth` hook (``as_token`` requests,
  masquerading with ``?user_id=``, namespace checks for registration and login);
- ``pusher``: the durable bus subscriber delivering transactions (a long-lived service);
- ``queries``: user/alias queries and the third-party lookups;
- :meth:`add_bridge`: how a built-in bridge module attaches as an in-process appservice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.accounts import AccountService
from ruma.appservice.intent import Bridge, TransactionHandler
from ruma.appservice.namespaces import Interest, Registry
from ruma.appservice.pusher import AppserviceClient
from ruma.appservice.queries import AppserviceQueries
from ruma.appservice.registration import Registration, load_registrations, validate_together
from ruma.appservice.scheduler import AppservicePusher, Backoff, TransactionSink
from ruma.bus import EventBus
from ruma.client.auth import Requester
from ruma.errors import Codes, MatrixError, forbidden
from ruma.handlers.typing import TypingHandler
from ruma.rooms.service import RoomServices
from ruma.storage.appservice import AppserviceStore
from ruma.storage.database import Database
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import ReceiptStore

__all__ = ["AppserviceAuthHook", "AppserviceServices"]


class AppserviceAuthHook:
    """Authenticates appservices for :class:`~ruma.client.auth.Authenticator`."""

    def __init__(self, registry: Registry, accounts: AccountService, server_name: str) -> None:
        self._registry = registry
        self._accounts = accounts
        self._server_name = server_name

    async def requester_for_token(
        self, token: str, user_id: str | None, device_id: str | None
    ) -> Requester | None:
        reg = self._registry.for_token(token)
        if reg is None:
            return None
        target = reg.sender if user_id is None else user_id
        if target != reg.sender:
            if not reg.is_user_in_namespace(target) or target.partition(":")[2] != (
                self._server_name
            ):
                raise forbidden("Application service cannot masquerade as this user")
            user = await self._accounts.store.get_user(target)
            if user is None:
                raise forbidden(f"Application service has not registered {target}")
        if device_id is not None:
            if not reg.msc3202:
                device_id = None  # device masquerading is opt-in (org.matrix.msc3202)
            elif await self._accounts.store.get_device(target, device_id) is None:
                raise MatrixError(
                    400, Codes.UNKNOWN, f"Unknown device {device_id} for user {target}"
                )
        return Requester(
            user_id=target,
            device_id=device_id,
            token_id=None,
            appservice_id=reg.id,
            rate_limited=reg.rate_limited,
        )

    async def can_register(self, appservice_id: str, user_id: str) -> bool:
        reg = self._registry.get(appservice_id)
        return reg is not None and reg.is_interested_in_user(user_id)

    async def is_exclusive_user(self, user_id: str) -> bool:
        return self._registry.exclusive_user_owner(user_id) is not None


class _SenderAccounts(Service):
    """Creates each appservice's sender user at startup (it acts without registering)."""

    log = Logger()

    def __init__(self, registry: Registry, accounts: AccountService) -> None:
        self._registry = registry
        self._accounts = accounts
        self._running: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._running = Deferred.fromCoroutine(self.ensure())
        self._running.addErrback(lambda f: self.log.failure("creating appservice senders", f))

    async def ensure(self) -> None:
        for reg in self._registry.all:
            created = await self._accounts.store.create_user(
                reg.sender,
                None,
                created_ts=self._accounts.now_ms(),
                appservice_id=reg.id,
                displayname=reg.sender_localpart,
            )
            if created:
                self.log.info("created {sender} for appservice {as_id}", sender=reg.sender,
                              as_id=reg.id)


class AppserviceServices:
    log = Logger()

    def __init__(
        self,
        *,
        registrations: Sequence[Registration],
        db: Database,
        bus: EventBus,
        clock: IReactorTime,
        accounts: AccountService,
        rooms: RoomServices,
        client: AppserviceClient,
        server_name: str,
        typing: TypingHandler | None = None,
        receipts: ReceiptStore | None = None,
        presence: PresenceStore | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._accounts = accounts
        self._rooms = rooms
        self._server_name = server_name
        self.registry = Registry(registrations)
        self.store = AppserviceStore(db)
        self.client = client
        self.interest = Interest(self.registry, rooms.store, rooms.rooms, clock)
        self.queries = AppserviceQueries(self.registry, client)
        self.auth = AppserviceAuthHook(self.registry, accounts, server_name)
        sinks: dict[str, TransactionSink] = {
            reg.id: self._http_sink for reg in registrations if reg.url is not None
        }
        self.pusher = AppservicePusher(
            bus=bus,
            clock=clock,
            registry=self.registry,
            interest=self.interest,
            store=self.store,
            events=rooms.store,
            sinks=sinks,
            typing=typing,
            receipts=receipts,
            presence=presence,
            backoff=backoff,
        )
        self._senders = _SenderAccounts(self.registry, accounts)
        self.bridges: dict[str, Bridge] = {}
        # Queries for unknown users and aliases in exclusive namespaces.
        rooms.aliases.query_unknown = self.queries.query_alias
        rooms.profiles.query_unknown = self.queries.query_user

    @classmethod
    def from_files(cls, paths: Sequence[str], **kwargs: Any) -> AppserviceServices:
        """Load and check ``app_service_config_files`` (raises ``ConfigError``)."""
        server_name = kwargs["server_name"]
        return cls(registrations=load_registrations(paths, server_name), **kwargs)

    async def _http_sink(self, reg: Registration, txn_id: str, body: Any) -> None:
        await self.client.push(reg, txn_id, body)

    @property
    def services(self) -> list[Service]:
        """The long-lived services to start, in order."""
        return [self._senders, self.pusher]

    def add_bridge(self, registration: Registration, handler: TransactionHandler) -> Bridge:
        """Attach an in-process appservice (a bridge module); call before starting."""
        regs = [*self.registry.all, registration]
        validate_together(regs)
        self.registry.replace(regs)
        self.interest.forget_all()
        bridge = Bridge(registration, handler, self._accounts, self._rooms)
        self.bridges[registration.id] = bridge
        self.pusher.add_sink(registration.id, bridge)
        return bridge
