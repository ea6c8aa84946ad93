"""The IRC bridge as a bridge module: built from ``bridges: irc:``, attached as an in-process
appservice, and run as a Twisted service (started once the database is ready).

:class:`IrcBridgeModule` is the plugin (``ruma/bridges/plugins/irc.py`` exposes it);
:class:`IrcBridgeHost` is what it builds: it owns the :class:`~.bridge.IrcBridge`, answers
the alias and user queries of its namespace (joining ``#irc_libera_ruma:server`` creates that
portal), and starts and stops every network's connections.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from ruma.appservice.registration import Namespace, Registration
from ruma.bridges.base import Bridge, BridgeContext, IBridgeModule
from ruma.bridges.irc.bridge import EndpointFactory, IrcBridge
from ruma.bridges.irc.config import IrcBridgeConfig, NetworkConfig, parse_irc_config
from ruma.config import ConfigReader
from ruma.storage.irc import IrcStore

__all__ = ["IrcBridgeHost", "IrcBridgeModule", "irc_registration", "tcp_endpoints"]

REGISTRATION_ID = "ruma-irc-bridge"


def irc_registration(config: IrcBridgeConfig) -> Registration:
    """The bridge's appservice registration: its users and aliases, exclusively."""
    server = re.escape(config.server_name)
    prefix = re.escape(config.user_prefix)
    users = f"@{prefix}.*:{server}"
    aliases = f"#{prefix}.*:{server}"
    return Registration(
        id=REGISTRATION_ID,
        url=None,
        as_token="in-process-" + secrets.token_urlsafe(24),
        hs_token="in-process-" + secrets.token_urlsafe(24),
        sender_localpart=config.bot_localpart,
        server_name=config.server_name,
        users=(Namespace(users, True, re.compile(users)),),
        aliases=(Namespace(aliases, True, re.compile(aliases)),),
        rate_limited=False,
        protocols=("irc",),
        source="bridges.irc",
    )


def tcp_endpoints(reactor: Any) -> EndpointFactory:
    """Endpoints to the networks: TCP, or TLS checking the server's certificate."""

    def make(net: NetworkConfig) -> IStreamClientEndpoint:
        from twisted.internet import ssl

        tcp = HostnameEndpoint(reactor, net.host, net.port)
        if not net.tls:
            return tcp
        if net.tls_verify:
            options = ssl.optionsForClientTLS(net.host)
        else:
            options = ssl.CertificateOptions(verify=False)
        return wrapClientTLS(options, tcp)

    return make


class _BridgeService(Service):
    log = Logger()

    def __init__(self, bridge: IrcBridge) -> None:
        self.bridge = bridge
        self._starting: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._starting = Deferred.fromCoroutine(self.bridge.start())
        self._starting.addErrback(lambda f: self.log.failure("starting the IRC bridge", f))

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        await self.bridge.stop()


class IrcBridgeHost:
    """The built IRC bridge module (a :class:`~ruma.bridges.base.Bridge`)."""

    def __init__(
        self, context: BridgeContext, config: IrcBridgeConfig,
        endpoint_factory: EndpointFactory | None = None,
    ) -> None:
        self.config = config
        self._registration = irc_registration(config)
        self.bridge = IrcBridge(
            config,
            clock=context.clock,
            store=IrcStore(context.db),
            rooms=context.rooms,
            endpoint_factory=endpoint_factory or tcp_endpoints(context.reactor),
        )
        handle = context.appservices.add_bridge(self._registration, self.on_transaction)
        self.bridge.attach(handle)
        self._service = _BridgeService(self.bridge)
        aliases = context.rooms.aliases
        aliases.query_unknown = _chain(self.bridge.query_alias, aliases.query_unknown)
        profiles = context.rooms.profiles
        profiles.query_unknown = _chain(self.bridge.query_user, profiles.query_unknown)

    @property
    def registration(self) -> Registration:
        return self._registration

    @property
    def service(self) -> IService:
        return self._service

    async def on_transaction(self, txn_id: str, body: Mapping[str, Any]) -> None:
        await self.bridge.on_transaction(txn_id, body)

    async def portal_for_room(self, room_id: str) -> str | None:
        found = self.bridge.portal(room_id)
        return f"{found[0].net.name}/{found[1].channel}" if found else None

    def puppet_for_user(self, user_id: str) -> str | None:
        for net in self.bridge.networks.values():
            puppet = net.puppets.get(user_id)
            if puppet is not None:
                return puppet.nick
        return None


def _chain(
    mine: Callable[[str], Awaitable[bool]], previous: Callable[[str], Awaitable[bool]] | None
) -> Callable[[str], Awaitable[bool]]:
    async def query(key: str) -> bool:
        if await mine(key):
            return True
        return previous is not None and await previous(key)

    return query


@implementer(IPlugin, IBridgeModule)
class IrcBridgeModule:
    """The ``irc`` bridge module."""

    name = "irc"

    def build(self, context: BridgeContext, section: ConfigReader) -> Bridge:
        config = parse_irc_config(section, context.config.server_name,
                                  context.config.public_baseurl)
        return IrcBridgeHost(context, config)
