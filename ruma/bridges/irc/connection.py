"""The lifecycle of one IRC connection (the bridge bot's, or a Matrix user's puppet).

Each :class:`IrcConnection` is an automat ``TypeMachineBuilder`` machine around a Twisted
``ClientService`` (which does the reconnecting, with backoff, on the injected clock)::

    Idle ──start/send──▶ Connecting ──registered──▶ Registered ──all joined──▶ Joined
      ▲                     ▲    │                     │    ▲                   │
      │                     │    └────────lost─────────┴────┼───────lost────────┤
      │                     │                               │                   ▼
      │                     └──────────connecting────────── BackingOff ◀────────┘
      └──────────────────────── go_idle (from any connected state) ─────────────┘

Callers only send inputs (``start``, ``send``, ``join``, ``part``, ``go_idle``, ``stop``);
the IRC events (registration, JOINs, the connection dropping) come from the protocol. Lines
sent while not registered wait in a queue and go out, after the channel JOINs, once the
server has welcomed us again, so a reconnect (after an IRC server restart, say) rejoins every
channel and loses nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from automat import TypeMachineBuilder, pep614
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ruma.bridges.irc.protocol import (
    ConnectionSettings,
    Disconnected,
    IrcEvent,
    IrcProtocol,
    Joined,
    Kicked,
    NickChanged,
    Parted,
    Registered,
    irc_key,
)

__all__ = ["ConnectionCore", "IrcConnection", "make_connection"]

EventSink = Callable[["ConnectionCore", IrcEvent], None]


class IrcConnection(Protocol):
    """What callers may tell a connection."""

    def start(self) -> None:
        """Connect (and keep reconnecting) unless already connected or connecting."""

    def send(self, line: str) -> None:
        """Send a raw line now if registered, else after (re)registering; wakes an idle one."""

    def join(self, channel: str) -> None:
        """Be in ``channel`` from now on (rejoined after every reconnect)."""

    def part(self, channel: str, reason: str) -> None:
        """Leave ``channel`` and stop rejoining it."""

    def go_idle(self, reason: str) -> Deferred[None]:
        """QUIT and stay disconnected until ``start`` or ``send``."""

    def stop(self) -> Deferred[None]:
        """Disconnect for good (service stopping)."""

    def _connecting(self) -> None:
        """A new TCP connection was made."""

    def _registered(self) -> None:
        """The server welcomed us (001)."""

    def _all_joined(self) -> None:
        """Every wanted channel has been joined."""

    def _lost(self) -> None:
        """The TCP connection dropped."""


class _Factory(Factory):
    def __init__(self, core: ConnectionCore) -> None:
        self.core = core

    def buildProtocol(self, addr: IAddress | None) -> IrcProtocol:
        core = self.core
        settings = core.settings_for_attempt()
        proto = IrcProtocol(core.clock, settings, lambda ev: core.on_protocol_event(proto, ev))
        proto.factory = self
        core.protocol = proto
        assert core.machine is not None
        core.machine._connecting()
        return proto


@dataclass
class ConnectionCore:
    """The state a connection carries across reconnects."""

    name: str  # for logs: "libera bot" or "libera @alice:example.org"
    clock: IReactorTime
    endpoint: IStreamClientEndpoint
    settings: ConnectionSettings
    on_event: EventSink
    retry_initial: float = 1.0
    retry_max: float = 60.0
    wanted_channels: dict[str, str] = field(default_factory=dict)  # key -> channel
    joined_channels: set[str] = field(default_factory=set)  # keys
    queue: deque[str] = field(default_factory=deque)
    nick: str = ""
    protocol: IrcProtocol | None = None
    service: ClientService | None = None
    machine: IrcConnection | None = None
    registrations: int = 0
    log: Logger = field(default_factory=lambda: Logger(namespace="ruma.bridges.irc.connection"))

    def settings_for_attempt(self) -> ConnectionSettings:
        from dataclasses import replace

        return replace(self.settings, nickname=self.nick or self.settings.nickname)

    def on_protocol_event(self, proto: IrcProtocol, event: IrcEvent) -> None:
        if proto is not self.protocol:
            return  # a stale connection's last words
        machine = self.machine
        assert machine is not None
        if isinstance(event, Registered):
            self.nick = event.nick
            self.registrations += 1
            machine._registered()
        elif isinstance(event, NickChanged) and irc_key(event.old) == irc_key(self.nick):
            self.nick = event.new
        elif isinstance(event, Joined) and irc_key(event.source.nick) == irc_key(self.nick):
            self.joined_channels.add(irc_key(event.channel))
            if set(self.wanted_channels) <= self.joined_channels:
                machine._all_joined()
        elif isinstance(event, Parted) and irc_key(event.source.nick) == irc_key(self.nick):
            self.joined_channels.discard(irc_key(event.channel))
        elif isinstance(event, Kicked) and irc_key(event.nick) == irc_key(self.nick):
            self.joined_channels.discard(irc_key(event.channel))
        elif isinstance(event, Disconnected):
            self.protocol = None
            self.joined_channels.clear()
            machine._lost()
        self.on_event(self, event)

    @property
    def m(self) -> IrcConnection:
        """The machine (inputs go here)."""
        assert self.machine is not None
        return self.machine

    def connected_protocol(self) -> IrcProtocol | None:
        p = self.protocol
        return p if p is not None and not p.closed else None


def _start_service(c: IrcConnection, s: ConnectionCore) -> None:
    if s.service is None:
        s.service = ClientService(
            s.endpoint,
            _Factory(s),
            retryPolicy=backoffPolicy(initialDelay=s.retry_initial, maxDelay=s.retry_max,
                                      factor=2.0),
            clock=s.clock,
        )
    if not s.service.running:
        s.service.startService()


def _flush(s: ConnectionCore) -> None:
    proto = s.connected_protocol()
    if proto is None:
        return
    for key, channel in s.wanted_channels.items():
        if key not in s.joined_channels:
            proto.sendLine(f"JOIN {channel}")
    while s.queue:
        proto.sendLine(s.queue.popleft())


def _stop_service(s: ConnectionCore, reason: str | None) -> Deferred[None]:
    proto = s.connected_protocol()
    if proto is not None and reason is not None:
        proto.send_now(f"QUIT :{reason}")
    service, s.service = s.service, None
    if service is None or not service.running:
        return succeed(None)
    d: Deferred[None] = Deferred()
    stopped = service.stopService()
    stopped.addBoth(lambda _: d.callback(None))
    return d


def _build() -> Callable[[ConnectionCore], IrcConnection]:
    m = TypeMachineBuilder(IrcConnection, ConnectionCore)
    Idle = m.state("Idle")
    Connecting = m.state("Connecting")
    Registered_ = m.state("Registered")
    Joined_ = m.state("Joined")
    BackingOff = m.state("BackingOff")
    Stopped = m.state("Stopped")

    @pep614(Idle.upon(IrcConnection.start).to(Connecting))
    def start(c: IrcConnection, s: ConnectionCore) -> None:
        s.log.info("{name}: connecting", name=s.name)
        _start_service(c, s)

    for st in (Connecting, Registered_, Joined_, BackingOff, Stopped):
        st.upon(IrcConnection.start).loop().returns(None)

    @pep614(Idle.upon(IrcConnection.send).to(Connecting))
    def wake(c: IrcConnection, s: ConnectionCore, line: str) -> None:
        s.queue.append(line)
        s.log.info("{name}: connecting again to send", name=s.name)
        _start_service(c, s)

    @pep614(Connecting.upon(IrcConnection.send).loop())
    @pep614(BackingOff.upon(IrcConnection.send).loop())
    def queue(c: IrcConnection, s: ConnectionCore, line: str) -> None:
        s.queue.append(line)

    @pep614(Registered_.upon(IrcConnection.send).loop())
    @pep614(Joined_.upon(IrcConnection.send).loop())
    def send_now(c: IrcConnection, s: ConnectionCore, line: str) -> None:
        proto = s.connected_protocol()
        if proto is None:
            s.queue.append(line)
        else:
            proto.sendLine(line)

    @pep614(Stopped.upon(IrcConnection.send).loop())
    def dropped(c: IrcConnection, s: ConnectionCore, line: str) -> None:
        s.log.debug("{name}: stopped, not sending {line!r}", name=s.name, line=line)

    @pep614(Idle.upon(IrcConnection.join).loop())
    @pep614(Connecting.upon(IrcConnection.join).loop())
    @pep614(BackingOff.upon(IrcConnection.join).loop())
    @pep614(Stopped.upon(IrcConnection.join).loop())
    def want(c: IrcConnection, s: ConnectionCore, channel: str) -> None:
        s.wanted_channels[irc_key(channel)] = channel

    @pep614(Registered_.upon(IrcConnection.join).loop())
    def join_now(c: IrcConnection, s: ConnectionCore, channel: str) -> None:
        key = irc_key(channel)
        s.wanted_channels[key] = channel
        proto = s.connected_protocol()
        if key not in s.joined_channels and proto is not None:
            proto.sendLine(f"JOIN {channel}")

    @pep614(Joined_.upon(IrcConnection.join).to(Registered_))
    def join_more(c: IrcConnection, s: ConnectionCore, channel: str) -> None:
        join_now(c, s, channel)
        if set(s.wanted_channels) <= s.joined_channels:
            s.clock.callLater(0, c._all_joined)

    @pep614(Idle.upon(IrcConnection.part).loop())
    @pep614(Connecting.upon(IrcConnection.part).loop())
    @pep614(BackingOff.upon(IrcConnection.part).loop())
    @pep614(Stopped.upon(IrcConnection.part).loop())
    @pep614(Registered_.upon(IrcConnection.part).loop())
    @pep614(Joined_.upon(IrcConnection.part).loop())
    def part(c: IrcConnection, s: ConnectionCore, channel: str, reason: str) -> None:
        key = irc_key(channel)
        s.wanted_channels.pop(key, None)
        proto = s.connected_protocol()
        if key in s.joined_channels and proto is not None:
            proto.sendLine(f"PART {channel} :{reason}" if reason else f"PART {channel}")

    @pep614(Connecting.upon(IrcConnection._registered).to(Registered_))
    def registered(c: IrcConnection, s: ConnectionCore) -> None:
        s.log.info("{name}: registered as {nick}", name=s.name, nick=s.nick)
        _flush(s)
        if not s.wanted_channels:
            s.clock.callLater(0, c._all_joined)

    for st in (Idle, Registered_, Joined_, BackingOff, Stopped):
        st.upon(IrcConnection._registered).loop().returns(None)

    Registered_.upon(IrcConnection._all_joined).to(Joined_).returns(None)
    for st in (Idle, Connecting, Joined_, BackingOff, Stopped):
        st.upon(IrcConnection._all_joined).loop().returns(None)

    @pep614(Connecting.upon(IrcConnection._lost).to(BackingOff))
    @pep614(Registered_.upon(IrcConnection._lost).to(BackingOff))
    @pep614(Joined_.upon(IrcConnection._lost).to(BackingOff))
    def lost(c: IrcConnection, s: ConnectionCore) -> None:
        s.log.info("{name}: connection lost; reconnecting with backoff", name=s.name)

    for st in (Idle, BackingOff, Stopped):
        st.upon(IrcConnection._lost).loop().returns(None)

    BackingOff.upon(IrcConnection._connecting).to(Connecting).returns(None)
    for st in (Idle, Connecting, Registered_, Joined_, Stopped):
        st.upon(IrcConnection._connecting).loop().returns(None)

    @pep614(Connecting.upon(IrcConnection.go_idle).to(Idle))
    @pep614(Registered_.upon(IrcConnection.go_idle).to(Idle))
    @pep614(Joined_.upon(IrcConnection.go_idle).to(Idle))
    @pep614(BackingOff.upon(IrcConnection.go_idle).to(Idle))
    def idle(c: IrcConnection, s: ConnectionCore, reason: str) -> Deferred[None]:
        s.log.info("{name}: disconnecting ({reason})", name=s.name, reason=reason)
        s.joined_channels.clear()
        return _stop_service(s, reason)

    @pep614(Idle.upon(IrcConnection.go_idle).loop())
    @pep614(Stopped.upon(IrcConnection.go_idle).loop())
    def already_idle(c: IrcConnection, s: ConnectionCore, reason: str) -> Deferred[None]:
        return succeed(None)

    @pep614(Idle.upon(IrcConnection.stop).to(Stopped))
    @pep614(Connecting.upon(IrcConnection.stop).to(Stopped))
    @pep614(Registered_.upon(IrcConnection.stop).to(Stopped))
    @pep614(Joined_.upon(IrcConnection.stop).to(Stopped))
    @pep614(BackingOff.upon(IrcConnection.stop).to(Stopped))
    @pep614(Stopped.upon(IrcConnection.stop).loop())
    def stop(c: IrcConnection, s: ConnectionCore) -> Deferred[None]:
        return _stop_service(s, "Bridge shutting down")

    return m.build()


_machine_factory = _build()


def make_connection(
    name: str,
    clock: IReactorTime,
    endpoint: IStreamClientEndpoint,
    settings: ConnectionSettings,
    on_event: EventSink,
    channels: Iterable[str] = (),
    **kwargs: Any,
) -> ConnectionCore:
    """A new connection, Idle, that will join ``channels`` once started: its data, with the
    machine to send inputs to as ``.machine``."""
    core = ConnectionCore(name, clock, endpoint, settings, on_event, **kwargs)
    core.nick = settings.nickname
    for ch in channels:
        core.wanted_channels[irc_key(ch)] = ch
    machine = _machine_factory(core)
    core.machine = machine
    return core
