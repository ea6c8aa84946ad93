"""What a bridge module is, how it is found, and how it is started.

A bridge module (IRC, Slack…) is an in-process application service: it declares a
:class:`~ruma.appservice.registration.Registration` (its user and alias namespaces, checked
against the external appservices' like any other), receives exactly the transactions an
external appservice would through ``AppserviceServices.add_bridge`` (which is how it follows
the event bus: durably, in order, retried), and acts through ``Intent`` objects.

Modules are found as Twisted plugins: any object providing :class:`IBridgeModule` in a module
of the :mod:`ruma.bridges.plugins` package (which third-party packages can extend the usual
Twisted way, by shipping ``ruma/bridges/plugins/<name>.py``). Each module is configured under
``bridges: <name>:`` in ``homeserver.yaml`` and is only built when that section is present and
not ``enabled: false``. Its service is started and stopped with the homeserver's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface

from ruma.appservice.registration import Registration
from ruma.appservice.service import AppserviceServices
from ruma.config import ConfigError, ConfigReader, HomeserverConfig
from ruma.rooms.service import RoomServices
from ruma.storage.database import Database

__all__ = [
    "Bridge",
    "BridgeContext",
    "IBridgeModule",
    "build_bridges",
    "discover_modules",
]


@dataclass(frozen=True, slots=True)
class BridgeContext:
    """Everything a bridge module may use, handed over explicitly (no service locator)."""

    config: HomeserverConfig
    reactor: Any  # IReactorTCP/IReactorSSL for outbound connections
    clock: IReactorTime
    db: Database
    appservices: AppserviceServices
    rooms: RoomServices


class Bridge(Protocol):
    """A built bridge: its appservice registration, its service, and its mappings."""

    @property
    def registration(self) -> Registration:
        """Its namespaces (users, aliases) and sender, as attached with ``add_bridge``."""

    @property
    def service(self) -> IService:
        """Started once the database is ready and stopped with the homeserver."""

    async def on_transaction(self, txn_id: str, body: Mapping[str, Any]) -> None:
        """An appservice transaction (raise to have it delivered again later)."""

    async def portal_for_room(self, room_id: str) -> str | None:
        """The remote place (an IRC ``network/#channel``…) bridged to ``room_id``, if any."""

    def puppet_for_user(self, user_id: str) -> str | None:
        """The remote identity (an IRC nick…) that stands for a local Matrix user."""


class IBridgeModule(Interface):
    """A Twisted plugin naming one bridge module."""

    name = Attribute("The key under ``bridges:`` in homeserver.yaml, e.g. 'irc'.")

    def build(context: BridgeContext, section: ConfigReader) -> Bridge:
        """Parse ``section`` (raise ConfigError naming file and field) and build the bridge,
        attaching it with ``context.appservices.add_bridge``. Pure wiring: start nothing."""


def discover_modules() -> dict[str, IBridgeModule]:
    """Every bridge module installed, by name."""
    from twisted.plugin import getPlugins

    from ruma.bridges import plugins

    found: dict[str, IBridgeModule] = {}
    for module in getPlugins(IBridgeModule, plugins):
        found.setdefault(str(module.name), module)
    return found


def build_bridges(
    context: BridgeContext, modules: Mapping[str, IBridgeModule] | None = None
) -> Sequence[Bridge]:
    """The bridges configured under ``bridges:`` (``ConfigError`` for unknown ones)."""
    section = ConfigReader.for_section(context.config, "bridges")
    if not section.data:
        return []
    if modules is None:
        modules = discover_modules()
    bridges: list[Bridge] = []
    for name in section.data:
        if not isinstance(name, str) or name not in modules:
            known = ", ".join(sorted(modules)) or "none installed"
            raise ConfigError(
                f"{section.filename}: bridges.{name}: unknown bridge module (known: {known})"
            )
        sub = section.sub(name)
        if not sub.get_bool("enabled", True):
            continue
        bridges.append(modules[name].build(context, sub))
    return bridges
