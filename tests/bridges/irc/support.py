"""An in-memory homeserver with the IRC bridge, whose IRC connections are StringTransports.

Every connection the bridge opens (bot or puppet) lands on a :class:`FakeIrcEndpoint`; the
test plays the IRC server by feeding lines to ``conn.protocol`` and reading what was sent."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.irc.bridge import IrcBridge, NetworkBridge
from ruma.bridges.irc.connection import ConnectionCore
from ruma.bridges.irc.service import IrcBridgeHost
from tests.harness import TestHomeserver, make_homeserver


class FakeIrcEndpoint:
    """Connects at once to a StringTransport (or refuses while ``down``)."""

    def __init__(self) -> None:
        self.transports: list[StringTransport] = []
        self.protocols: list[Any] = []  # as ClientService sees them (its proxies)
        self.down = False

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.down:
            from twisted.internet.defer import fail
            from twisted.internet.error import ConnectionRefusedError

            return fail(ConnectionRefusedError())
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.transports.append(transport)
        self.protocols.append(proto)
        return succeed(proto)


def bridge_overrides(**network: Any) -> dict[str, Any]:
    net: dict[str, Any] = {"host": "irc.example", "port": 6667, "bot_nick": "RumaBridge",
                           "rate": 1000, "burst": 1000, "channels": {"#ruma": {}}}
    net.update(network)
    return {"bridges": {"irc": {"netsplit_window": 30, "idle_timeout": 0,
                                "networks": {"test": net}}}}


class IrcHarness:
    def __init__(self, test: SynchronousTestCase, data_dir: str | None = None,
                 **overrides: Any) -> None:
        self.test = test
        cfg = bridge_overrides()
        for k, v in overrides.items():
            if k == "network":
                cfg["bridges"]["irc"]["networks"]["test"].update(v)
            else:
                cfg["bridges"]["irc"][k] = v
        self.hs: TestHomeserver = _make(test, cfg, data_dir)
        self.host: IrcBridgeHost = self.hs.hs.bridges[0]
        self.bridge: IrcBridge = self.host.bridge
        self.net: NetworkBridge = self.bridge.networks["test"]
        self.endpoint = FakeIrcEndpoint()
        self.net.endpoint = self.endpoint  # type: ignore[assignment]
        self.net.bot.endpoint = self.endpoint  # type: ignore[assignment]
        self.clock = self.hs.clock
        self._started: list[Any] = []
        test.addCleanup(self.shutdown)
        hs = self.hs.hs
        assert hs.sync_services is not None and hs.appservices is not None
        for svc in [hs.sync_services, *hs.appservices.services, self.host.service]:
            svc.startService()
            self._started.append(svc)
        self.pump()

    def shutdown(self) -> None:
        for svc in reversed(self._started):
            d = svc.stopService()
            if isinstance(d, Deferred):
                self.pump()
                d.addErrback(lambda f: None)
        self._started = []

    def pump(self, rounds: int = 40) -> None:
        for _ in range(rounds):
            self.clock.advance(0)
            self.hs.treq.flush()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump()

    # -- playing the IRC server ------------------------------------------------------------

    def feed(self, conn: ConnectionCore, *lines: str) -> None:
        proto = conn.protocol
        assert proto is not None, f"{conn.name} is not connected"
        for line in lines:
            proto.dataReceived(line.encode("utf-8") + b"\r\n")
        self.pump()

    def sent(self, conn: ConnectionCore) -> list[str]:
        proto = conn.protocol
        assert proto is not None and proto.transport is not None
        t = proto.transport
        lines = t.value().decode("utf-8").split("\r\n")  # type: ignore[attr-defined]
        t.clear()  # type: ignore[attr-defined]
        return [ln for ln in lines if ln]

    def drop(self, conn: ConnectionCore) -> None:
        """The TCP connection of ``conn`` breaks."""
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        proto = conn.protocol
        assert proto is not None
        proxy = self.endpoint.protocols[self.endpoint.transports.index(proto.transport)]
        proxy.connectionLost(Failure(ConnectionLost()))
        self.pump()

    def welcome(self, conn: ConnectionCore, nick: str | None = None) -> list[str]:
        """Register ``conn`` as the server would; what it sent afterwards (JOINs, queued
        lines), without the registration and CAP lines."""
        nick = nick or conn.nick
        self.sent(conn)
        self.feed(conn, "CAP * LS :server-time message-tags",
                  "CAP * ACK :server-time message-tags", f":irc.test 001 {nick} :Welcome",
                  f":irc.test 005 {nick} PREFIX=(ov)@+ CHANMODES=b,k,l,imnpst :ok")
        return [ln for ln in self.sent(conn) if not ln.startswith("CAP ")]

    def bot_in_channel(self, *names: str) -> None:
        bot = self.net.bot
        self.welcome(bot)
        self.feed(bot, ":RumaBridge!r@h JOIN :#ruma",
                  ":irc.test 353 RumaBridge = #ruma :RumaBridge " + " ".join(names),
                  ":irc.test 366 RumaBridge #ruma :End")

    # -- the Matrix side ---------------------------------------------------------------------

    @property
    def room_id(self) -> str:
        return self.net.portals["#ruma"].room_id

    def members(self, room_id: str | None = None) -> dict[str, str]:
        store = self.hs.hs.rooms.store  # type: ignore[union-attr]
        return self.hs.run(store.get_current_members(room_id or self.room_id))  # type: ignore[no-any-return]

    def state(self, etype: str, key: str = "", room_id: str | None = None) -> Any:
        store = self.hs.hs.rooms.store  # type: ignore[union-attr]
        return self.hs.run(store.get_current_state_event(room_id or self.room_id, etype, key))

    def events(self, room_id: str | None = None, etype: str | None = None) -> list[Any]:
        """The room's timeline events, oldest first (protocol ``Event`` values)."""
        store = self.hs.hs.rooms.store  # type: ignore[union-attr]
        rows = self.hs.run(store.get_room_events(room_id or self.room_id, from_pos=0,
                                                 to_pos=10**12, limit=10000, backwards=False))
        return [e for _, e in rows if etype is None or e.type == etype]

    def member_events(self, user_id: str) -> list[Any]:
        return [e for e in self.events(etype="m.room.member") if e.state_key == user_id]

    def messages(self, room_id: str | None = None) -> list[Any]:
        return self.events(room_id, "m.room.message")


def _make(test: SynchronousTestCase, cfg: dict[str, Any], data_dir: str | None) -> TestHomeserver:
    if data_dir is None:
        return make_homeserver(test, config_overrides=cfg)
    # Reopen the same data directory (a restart).
    from twisted.internet.testing import MemoryReactorClock

    from ruma.accounts import run_inline
    from ruma.config import config_for_tests
    from ruma.protocol.signing import generate_signing_key
    from ruma.storage.database import Database, Engine
    from ruma.tap import build_homeserver
    from tests.harness import _TEST_DEFAULTS

    overrides = dict(_TEST_DEFAULTS)
    overrides.update(cfg)
    config = config_for_tests("test", data_dir, **overrides)
    clock = MemoryReactorClock()
    db = Database.inline(Engine.SQLITE, os.path.join(data_dir, "homeserver.db"))
    test.addCleanup(db.close)
    test.successResultOf(Deferred.fromCoroutine(db.prepare()))
    hs = build_homeserver(config, reactor=clock, clock=clock, database=db,
                          signing_key=generate_signing_key("test"), run_in_thread=run_inline)
    return TestHomeserver(test, hs)
