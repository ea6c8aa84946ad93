"""In-memory homeservers for the inbound federation tests, and forged PDUs.

``Servers`` builds named homeservers (``tests.harness.make_homeserver``, the real
``build_homeserver`` graph) sharing one ``MemoryFederationAgent``. Transactions are pushed
by hand (:meth:`Servers.send_txn`, signed by the origin's real ``FederationClient``), so
each test decides exactly what a receiver gets. :meth:`Servers.forge` builds an event as
another server would: auth events chosen from the receiver's current state, prev events
its forward extremities, hashed and signed with the origin's key.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.http import FederationError
from ruma.protocol.events import Event, auth_types_for_event, build_event
from ruma.storage.database import Database, Engine
from tests.federation.memory import MemoryFederationAgent
from tests.harness import TestHomeserver, make_homeserver

_ids = itertools.count(1)


def q(s: str) -> str:
    return quote(s, safe="")


class Servers:
    def __init__(
        self, test_case: SynchronousTestCase, names: Sequence[str] = ("a.test", "b.test"),
        *, joins: bool = False,
    ) -> None:
        """``joins=True`` plugs in the membership federation (remote joins over
        make_join/send_join) so a server can join a room for real. A test case with
        ``engine = Engine.POSTGRES`` gets each server on its own PostgreSQL schema."""
        self.test_case = test_case
        self.agent = MemoryFederationAgent()
        # Every federation request made: (method, uri).
        self.requests: list[tuple[bytes, bytes]] = []
        inner = self.agent.request

        def recording(method: bytes, uri: bytes, headers: Any = None, body: Any = None) -> Any:
            self.requests.append((method, uri))
            return inner(method, uri, headers, body)

        self.agent.request = recording  # type: ignore[method-assign]
        self.hs: dict[str, TestHomeserver] = {}
        for name in names:
            if getattr(test_case, "engine", Engine.SQLITE) is Engine.POSTGRES:
                hs = _postgres_homeserver(test_case, name, self.agent)
            else:
                hs = make_homeserver(test_case, server_name=name, federation_agent=self.agent)
            if joins and getattr(hs.hs, "room_federation", None) is None:
                from ruma.federation.rooms_wiring import wire_from_homeserver

                wire_from_homeserver(hs.hs)
            assert hs.hs.federation_resource is not None
            self.agent.add_server(name, hs.hs.federation_resource)
            self.hs[name] = hs

    def __getitem__(self, name: str) -> TestHomeserver:
        return self.hs[name]

    # -- driving ---------------------------------------------------------------------------

    def flush(self) -> None:
        for hs in self.hs.values():
            hs.clock.advance(0)
            hs.treq.flush()
        self.agent.flush()

    def wait(self, d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        for _ in range(2000):
            if results:
                break
            self.flush()
        if not results:
            raise AssertionError("never finished")
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def run(self, coro: Any) -> Any:
        return self.wait(Deferred.fromCoroutine(coro))

    def client(self, server: str, method: str, path: str, body: Any = None,
               token: str | None = None) -> tuple[int, Any]:
        hs = self.hs[server]
        hdrs: dict[bytes, list[bytes]] = {}
        if token is not None:
            hdrs[b"Authorization"] = [b"Bearer " + token.encode("ascii")]
        data = json.dumps(body).encode("utf-8") if body is not None else None
        response = self.wait(hs.treq.request(method, hs.url(path), data=data, headers=hdrs))
        content = self.wait(response.content())
        return int(response.code), json.loads(content) if content else None

    def ok(self, server: str, method: str, path: str, body: Any = None,
           token: str | None = None) -> Any:
        status, out = self.client(server, method, path, body, token)
        if status != 200:
            raise AssertionError(f"{method} {path} on {server}: {status} {out}")
        return out

    def fed(self, origin: str, destination: str, method: str, path: str, body: Any = None,
            query: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        """A request signed by ``origin``: ``(status, body)``."""
        client = self.hs[origin].hs.federation.client  # type: ignore[union-attr]
        try:
            return 200, self.run(client.request(method, destination, path, body=body,
                                                query=query))
        except FederationError as e:
            if e.status is None:
                raise
            return e.status, e.body

    def send_txn(self, origin: str, destination: str, txn_id: str, pdus: Sequence[Any],
                 edus: Sequence[Any] = (), *, body_origin: str | None = None) -> tuple[int, Any]:
        body = {
            "origin": body_origin or origin,
            "origin_server_ts": 1,
            "pdus": [p.pdu() if isinstance(p, Event) else p for p in pdus],
        }
        if edus:
            body["edus"] = list(edus)
        return self.fed(origin, destination, "PUT", f"/_matrix/federation/v1/send/{txn_id}",
                        body)

    # -- rooms -----------------------------------------------------------------------------

    def create_room(self, server: str, token: str, **body: Any) -> str:
        body.setdefault("preset", "public_chat")
        room_id: str = self.ok(server, "POST", "/createRoom", body, token)["room_id"]
        return room_id

    def store(self, server: str) -> Any:
        return self.hs[server].hs.rooms.store  # type: ignore[union-attr]

    def forge(
        self,
        origin: str,
        receiver: str,
        room_id: str,
        sender: str,
        type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev_events: Sequence[Event] | None = None,
        auth_events: Sequence[Event] | None = None,
        ts: int | None = None,
        extra_auth: Sequence[Event] = (),
    ) -> Event:
        """An event of ``origin``'s built on ``receiver``'s view of the room
        (``extra_auth`` replaces the current state's events at the same keys)."""
        store = self.store(receiver)
        version = self.run(store.get_room_version(room_id))
        if auth_events is None:
            wanted = auth_types_for_event(version, type, sender, state_key, content)
            wanted.add(("m.room.create", ""))
            ids = self.run(store.get_current_state_keys(room_id, wanted))
            for extra in extra_auth:
                ids.pop(extra.state_key_tuple, None)
            auth_events = [*self.run(store.get_pdus(ids.values())).values(), *extra_auth]
        if prev_events is None:
            head = self.run(store.get_room_head(room_id))
            prev_events = list(self.run(store.get_pdus(head.forward_extremities)).values())
        hs = self.hs[origin].hs
        return build_event(
            version,
            room_id=room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_events=prev_events,
            auth_events=auth_events,
            origin_server_ts=ts if ts is not None else int(self.hs[origin].clock.seconds() * 1000),
            server_name=origin,
            signing_key=hs.signing_key,
            event_id_localpart=f"f{next(_ids)}",
        )

    def stored(self, server: str, event_id: str) -> bool:
        return event_id in self.run(self.store(server).have_events([event_id]))

    def meta(self, server: str, event_id: str) -> Any:
        return self.run(self.store(server).get_event_meta([event_id])).get(event_id)

    def timeline(self, server: str, room_id: str) -> list[Event]:
        events = self.run(self.store(server).get_room_events(
            room_id, from_pos=0, to_pos=2**62, limit=100_000, backwards=False))
        return [e for _, e in events]


def _postgres_homeserver(
    test_case: SynchronousTestCase, name: str, agent: MemoryFederationAgent
) -> TestHomeserver:
    """``make_homeserver``'s graph on a fresh PostgreSQL schema (skipped without PostgreSQL
    unless CI=true)."""
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
    clock = MemoryReactorClock()
    hs = build_homeserver(
        config_for_tests(name, data_dir, **_TEST_DEFAULTS),
        reactor=clock,
        clock=clock,
        database=db,
        signing_key=generate_signing_key("test"),
        run_in_thread=run_inline,
        federation_agent=agent,
    )
    return TestHomeserver(test_case, hs)
