"""Server discovery: from a server name to where to connect (server-server API, "Resolving
server names").

Order: IP literal → explicit port → ``/.well-known/matrix/server`` (its answer goes through
the same steps, minus another well-known) → SRV ``_matrix-fed._tcp`` → legacy SRV
``_matrix._tcp`` → port 8448. The network look-ups are injected so the order and the caching
are tested without a network.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import ServerName

DEFAULT_PORT = 8448
# Spec: cache well-known results per Cache-Control, 24 h by default, no more than 48 h;
# failures for up to an hour so a server without one is not asked on every request.
WELL_KNOWN_DEFAULT_TTL = 24 * 3600.0
WELL_KNOWN_MAX_TTL = 48 * 3600.0
WELL_KNOWN_ERROR_TTL = 3600.0
WELL_KNOWN_MAX_BYTES = 50 * 1024


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class WellKnownResponse:
    """What the HTTP layer got for ``https://host/.well-known/matrix/server``."""

    status: int
    body: bytes
    cache_control: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedServer:
    """Where and how to reach a server."""

    server_name: str
    host_header: str  # the Host header to send
    tls_name: str  # the name the certificate must be valid for (a hostname or IP literal)
    connect_host: str  # what to connect to (a hostname to resolve, or an IP literal)
    port: int


WellKnownFetcher = Callable[[str], Awaitable[WellKnownResponse | None]]
SrvLookup = Callable[[str], Awaitable[Sequence[SrvRecord]]]


class ServerResolver:
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        fetch_well_known: WellKnownFetcher,
        lookup_srv: SrvLookup,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._fetch_well_known = fetch_well_known
        self._lookup_srv = lookup_srv
        self._rng = rng or random.Random()
        self._well_known: dict[str, tuple[float, str | None]] = {}

    async def resolve(self, server_name: str) -> ResolvedServer:
        try:
            name = ServerName.parse(server_name)
        except InvalidIdentifier as e:
            raise ValueError(f"invalid server name {server_name!r}: {e}") from e
        # 1 and 2: an IP literal or an explicit port is used as it is.
        if _is_ip_literal(name.host) or name.port is not None:
            return ResolvedServer(
                server_name, server_name, name.host, _strip_brackets(name.host),
                name.port or DEFAULT_PORT,
            )
        # 3: delegation through .well-known.
        delegated = await self._delegation(name.host)
        if delegated is not None:
            try:
                target = ServerName.parse(delegated)
            except InvalidIdentifier:
                self.log.warn("{server}'s .well-known names an invalid server {d}",
                              server=server_name, d=delegated)
            else:
                if _is_ip_literal(target.host) or target.port is not None:
                    return ResolvedServer(
                        server_name, delegated, target.host, _strip_brackets(target.host),
                        target.port or DEFAULT_PORT,
                    )
                srv = await self._srv(target.host)
                if srv is not None:
                    return ResolvedServer(server_name, target.host, target.host, srv[0], srv[1])
                return ResolvedServer(
                    server_name, target.host, target.host, target.host, DEFAULT_PORT
                )
        # 4 and 5: SRV records of the server name itself, then the default port.
        srv = await self._srv(name.host)
        if srv is not None:
            return ResolvedServer(server_name, name.host, name.host, srv[0], srv[1])
        return ResolvedServer(server_name, name.host, name.host, name.host, DEFAULT_PORT)

    async def _delegation(self, host: str) -> str | None:
        now = self._clock.seconds()
        cached = self._well_known.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = await self._fetch_well_known(host)
        except Exception as e:
            self.log.debug("no .well-known for {host}: {e}", host=host, e=e)
            response = None
        delegated, ttl = _parse_well_known(response)
        self._well_known[host] = (now + ttl, delegated)
        return delegated

    async def _srv(self, host: str) -> tuple[str, int] | None:
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            try:
                records = await self._lookup_srv(service + host)
            except Exception as e:
                self.log.debug("SRV {name} failed: {e}", name=service + host, e=e)
                continue
            chosen = pick_srv(records, self._rng)
            if chosen is not None:
                return chosen.target, chosen.port
        return None

    def forget(self, server_name: str) -> None:
        """Drop a cached delegation (e.g. after repeated connection failures)."""
        self._well_known.pop(server_name, None)


def pick_srv(records: Sequence[SrvRecord], rng: random.Random) -> SrvRecord | None:
    """RFC 2782: the lowest priority, chosen among equals at random in proportion to weight.

    A single record with target "." means the service is decidedly not available.
    """
    usable = [r for r in records if r.target not in (".", "")]
    if not usable:
        return None
    best = min(r.priority for r in usable)
    group = [r for r in usable if r.priority == best]
    total = sum(r.weight for r in group)
    if total == 0:
        return group[0]
    point = rng.uniform(0, total)
    for r in group:
        point -= r.weight
        if point <= 0:
            return r
    return group[-1]


def _parse_well_known(response: WellKnownResponse | None) -> tuple[str | None, float]:
    if response is None or response.status != 200:
        return None, WELL_KNOWN_ERROR_TTL
    if len(response.body) > WELL_KNOWN_MAX_BYTES:
        return None, WELL_KNOWN_ERROR_TTL
    try:
        doc = json.loads(response.body)
    except ValueError:
        return None, WELL_KNOWN_ERROR_TTL
    server = doc.get("m.server") if isinstance(doc, dict) else None
    if not isinstance(server, str) or not server:
        return None, WELL_KNOWN_ERROR_TTL
    return server, _ttl(response.cache_control)


def _ttl(cache_control: str | None) -> float:
    if cache_control:
        directives = [d.strip().lower() for d in cache_control.split(",")]
        if "no-store" in directives or "no-cache" in directives:
            return 0.0
        for d in directives:
            if d.startswith("max-age="):
                try:
                    return min(float(int(d[8:])), WELL_KNOWN_MAX_TTL)
                except ValueError:
                    break
    return WELL_KNOWN_DEFAULT_TTL


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(_strip_brackets(host))
    except ValueError:
        return False
    return True
