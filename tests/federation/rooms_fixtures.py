"""Two or three in-memory Ruma homeservers federating through one MemoryFederationAgent,
for the membership, invite, query and backfill tests.

Each server is ``tests.harness.make_homeserver`` (the real ``build_homeserver`` graph) with
the room federation wired in (``ruma.federation.rooms_wiring``) if ``build_homeserver``
has not done it already. :meth:`Federation.request` drives a client request to completion,
flushing both the client's in-memory HTTP and the federation traffic it causes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.rooms_wiring import RoomFederation, wire_from_homeserver
from ruma.storage.database import Database, Engine
from tests.federation.memory import MemoryFederationAgent
from tests.harness import TestHomeserver, make_homeserver


class Federation:
    def __init__(
        self,
        test_case: SynchronousTestCase,
        names: tuple[str, ...] = ("a.test", "b.test"),
        *,
        config_overrides: Mapping[str, Any] | None = None,
        engine: Engine | None = None,
    ) -> None:
        """``engine``: by default each server is SQLite (``make_homeserver``); with
        ``Engine.POSTGRES`` each gets its own fresh PostgreSQL schema (skipped when
        PostgreSQL is unreachable, unless CI=true)."""
        if engine is None:
            engine = getattr(test_case, "engine", Engine.SQLITE)
        self.test_case = test_case
        self.agent = MemoryFederationAgent()
        self.servers: dict[str, TestHomeserver] = {}
        self.wiring: dict[str, RoomFederation] = {}
        self.senders: dict[str, Any] = {}
        for name in names:
            if engine is Engine.POSTGRES:
                hs = _postgres_homeserver(test_case, name, self.agent, config_overrides)
            else:
                hs = make_homeserver(
                    test_case,
                    server_name=name,
                    federation_agent=self.agent,
                    config_overrides=config_overrides,
                )
            sender = getattr(hs.hs, "federation_sender", None)
            if sender is None:
                sender = self._add_sender(hs)
            else:  # built by build_homeserver; the harness starts no services
                hs.hs.sync_services.bus.start()
                test_case.successResultOf(Deferred.fromCoroutine(sender.start()))
                test_case.addCleanup(self._stop_sender, sender)
            self.senders[name] = sender
            wired = getattr(hs.hs, "room_federation", None)
            if wired is None:
                wired = wire_from_homeserver(hs.hs, relay=sender.relay)
            self.wiring[name] = wired
            assert hs.hs.federation_resource is not None
            self.agent.add_server(name, hs.hs.federation_resource)
            self.servers[name] = hs

    def _add_sender(self, hs: TestHomeserver) -> Any:
        """The federation sender on the homeserver's bus, as ``twistd ruma`` runs it."""
        from ruma.federation.sender import build_federation_sender

        h = hs.hs
        assert h.sync_services is not None and h.federation is not None and h.rooms is not None
        bus = h.sync_services.bus
        bus.start()  # idempotent
        sender = build_federation_sender(
            db=h.db,
            bus=bus,
            clock=h.clock,
            server_name=h.config.server_name,
            events=h.rooms.store,
            client=h.federation.client,
        )
        self.test_case.successResultOf(Deferred.fromCoroutine(sender.start()))
        self.test_case.addCleanup(self._stop_sender, sender)
        return sender

    def _stop_sender(self, sender: Any) -> None:
        self.wait(Deferred.fromCoroutine(sender.stop()))

    def __getitem__(self, name: str) -> TestHomeserver:
        return self.servers[name]

    def flush(self) -> None:
        for hs in self.servers.values():
            hs.clock.advance(0)
            hs.treq.flush()
        self.agent.flush()

    def settle(self, rounds: int = 100) -> None:
        """Let buses, senders and in-memory HTTP run until nothing is left to do now."""
        for _ in range(rounds):
            self.flush()

    def wait(self, d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        for _ in range(500):
            if results:
                break
            self.flush()
        if not results:
            raise AssertionError("request never finished")
        from twisted.python.failure import Failure

        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def run(self, coro: Any) -> Any:
        return self.wait(Deferred.fromCoroutine(coro))

    def request(
        self, server: str, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        hs = self.servers[server]
        hdrs: dict[bytes, list[bytes]] = {}
        if token is not None:
            hdrs[b"Authorization"] = [b"Bearer " + token.encode("ascii")]
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            hdrs[b"Content-Type"] = [b"application/json"]
        response = self.wait(hs.treq.request(method, hs.url(path), data=data, headers=hdrs))
        content = self.wait(response.content())
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = None
        return int(response.code), parsed

    def ok(
        self, server: str, method: str, path: str, body: Any = None, token: str | None = None
    ) -> Any:
        status, out = self.request(server, method, path, body, token)
        if status != 200:
            raise AssertionError(f"{method} {path} on {server}: {status} {out}")
        return out

    def fed_request(
        self, origin: str, destination: str, method: str, path: str, body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """A signed federation request from ``origin`` (raises FederationError)."""
        client = self.servers[origin].hs.federation.client  # type: ignore[union-attr]
        return self.run(
            client.request(method, destination, path, body=body, query=query)
        )

    # -- client conveniences ------------------------------------------------------------

    def create_room(self, server: str, token: str, **body: Any) -> str:
        out = self.ok(server, "POST", "/createRoom", body, token)
        room_id: str = out["room_id"]
        return room_id

    def send_text(self, server: str, token: str, room_id: str, text: str, txn: str) -> str:
        out = self.ok(
            server,
            "PUT",
            f"/rooms/{_q(room_id)}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": text},
            token,
        )
        event_id: str = out["event_id"]
        return event_id

    def membership(self, server: str, room_id: str, user_id: str) -> str | None:
        hs = self.servers[server]
        ev = hs.run(hs.hs.rooms.store.get_current_state_event(room_id, "m.room.member", user_id))  # type: ignore[union-attr]
        return ev.membership if ev is not None else None

    def sync(self, server: str, token: str) -> Any:
        return self.ok(server, "GET", "/sync?timeout=0", None, token)


def _postgres_homeserver(
    test_case: SynchronousTestCase,
    name: str,
    agent: MemoryFederationAgent,
    config_overrides: Mapping[str, Any] | None,
) -> TestHomeserver:
    """``make_homeserver`` on a fresh PostgreSQL schema of its own."""
    import os

    from twisted.internet.testing import MemoryReactorClock

    from ruma.accounts import run_inline
    from ruma.config import config_for_tests
    from ruma.protocol.signing import generate_signing_key
    from ruma.tap import build_homeserver
    from tests.harness import _TEST_DEFAULTS
    from tests.storage.engines import _create_schema, pg_args

    schema = _create_schema(test_case)
    db = Database.inline(Engine.POSTGRES, {**pg_args(), "options": f"-c search_path={schema}"})
    test_case.addCleanup(db.close)
    test_case.successResultOf(Deferred.fromCoroutine(db.prepare()))
    data_dir = os.path.abspath(test_case.mktemp())
    os.makedirs(data_dir)
    overrides = dict(_TEST_DEFAULTS)
    overrides.update(config_overrides or {})
    clock = MemoryReactorClock()
    hs = build_homeserver(
        config_for_tests(name, data_dir, **overrides),
        reactor=clock,
        clock=clock,
        database=db,
        signing_key=generate_signing_key("test"),
        run_in_thread=run_inline,
        federation_agent=agent,
    )
    return TestHomeserver(test_case, hs)


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


q = _q
