"""Test support: a homeserver with appservices, and an appservice to push to, in memory.

``FakeAppservice`` is a real ``twisted.web`` resource serving the appservice API (the
transactions it accepted, the queries and pings it answered); ``MemoryAgent`` carries the
homeserver's requests to it through ``treq.testing.RequestTraversalAgent`` (real HTTP
parsing, no sockets) and can be switched "down" (connection refused) or made to hang.
``AppserviceHomeserver`` builds the homeserver exactly as ``ruma.tap.build_homeserver`` does,
on a data directory the test chooses, so a test can rebuild it on the same database file
("restart").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import yaml
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from ruma.accounts import run_inline
from ruma.config import config_for_tests
from ruma.protocol.signing import generate_signing_key
from ruma.storage.database import Database, Engine
from ruma.tap import build_homeserver
from tests.harness import _TEST_DEFAULTS, TestHomeserver

HS_TOKEN = "hs-secret"
AS_TOKEN = "as-secret"


def registration(
    as_id: str = "irc",
    *,
    url: str | None = "http://as.test:9000",
    prefix: str = "irc_",
    as_token: str = AS_TOKEN,
    hs_token: str = HS_TOKEN,
    server: str = "test",
    **extra: Any,
) -> dict[str, Any]:
    reg: dict[str, Any] = {
        "id": as_id,
        "url": url,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": f"{prefix}bot",
        "namespaces": {
            "users": [{"exclusive": True, "regex": f"@{prefix}.*:{server}"}],
            "aliases": [{"exclusive": True, "regex": f"#{prefix}.*:{server}"}],
            "rooms": [],
        },
        "rate_limited": False,
    }
    reg.update(extra)
    return reg


def write_registration(directory: str, reg: Mapping[str, Any], name: str | None = None) -> str:
    path = os.path.join(directory, name or f"{reg['id']}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(dict(reg), f)
    return path


class FakeAppservice(Resource):
    """The appservice side of the API, recording what it was sent."""

    isLeaf = True

    def __init__(self, hs_token: str = HS_TOKEN) -> None:
        super().__init__()
        self.hs_token = hs_token
        self.transactions: list[tuple[str, dict[str, Any]]] = []
        self.attempts: list[str] = []  # every transaction ID received, accepted or not
        self.status = 200  # what to answer to transactions
        self.hang = False  # never answer
        self.legacy_only = False  # read the token only from ?access_token=
        self.users: set[str] = set()  # user IDs the appservice says exist
        self.aliases: set[str] = set()
        self.on_user_query: Any = None  # called with the user ID before answering
        self.on_alias_query: Any = None
        self.pings: list[dict[str, Any]] = []
        self.requests: list[tuple[bytes, bytes]] = []
        self.thirdparty: dict[str, Any] = {}
        self.hanging: list[Any] = []

    def _authorised(self, request: Any) -> bool:
        if self.legacy_only:
            return request.args.get(b"access_token") == [self.hs_token.encode()]
        header = request.getHeader(b"Authorization") or b""
        return header == b"Bearer " + self.hs_token.encode()

    def render(self, request: Any) -> Any:
        self.requests.append((request.method, request.uri))
        request.setHeader(b"Content-Type", b"application/json")
        if not self._authorised(request):
            request.setResponseCode(401 if self.legacy_only else 403)
            return json.dumps({"errcode": "M_FORBIDDEN"}).encode()
        path = request.path.decode()
        prefix = "/_matrix/app/v1/"
        if not path.startswith(prefix):
            request.setResponseCode(404)
            return b'{"errcode": "M_UNRECOGNIZED"}'
        rest = path[len(prefix):]
        if rest.startswith("transactions/") and request.method == b"PUT":
            txn_id = rest.split("/", 1)[1]
            self.attempts.append(txn_id)
            if self.hang:
                self.hanging.append(request)
                return NOT_DONE_YET
            if self.status != 200:
                request.setResponseCode(self.status)
                return b'{"errcode": "M_UNKNOWN"}'
            body = json.loads(request.content.read())
            if txn_id not in [t for t, _ in self.transactions]:
                self.transactions.append((txn_id, body))
            return b"{}"
        if rest.startswith("users/"):
            from urllib.parse import unquote

            user_id = unquote(rest.split("/", 1)[1])
            if self.on_user_query is not None:
                self.on_user_query(user_id)
            if user_id in self.users:
                return b"{}"
            request.setResponseCode(404)
            return b'{"errcode": "M_NOT_FOUND"}'
        if rest.startswith("rooms/"):
            from urllib.parse import unquote

            alias = unquote(rest.split("/", 1)[1])
            if self.on_alias_query is not None:
                self.on_alias_query(alias)
            if alias in self.aliases:
                return b"{}"
            request.setResponseCode(404)
            return b'{"errcode": "M_NOT_FOUND"}'
        if rest == "ping" and request.method == b"POST":
            self.pings.append(json.loads(request.content.read() or b"{}"))
            if self.status != 200:
                request.setResponseCode(self.status)
                return b'{"errcode": "M_UNKNOWN", "error": "nope"}'
            if self.hang:
                self.hanging.append(request)
                return NOT_DONE_YET
            return b"{}"
        if rest.startswith("thirdparty/"):
            key = rest[len("thirdparty/"):]
            if key in self.thirdparty:
                return json.dumps(self.thirdparty[key]).encode()
            request.setResponseCode(404)
            return b'{"errcode": "M_NOT_FOUND"}'
        request.setResponseCode(404)
        return b'{"errcode": "M_UNRECOGNIZED"}'

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.transactions for e in body.get("events", [])]


@implementer(IAgent)
class MemoryAgent:
    """An ``IAgent`` onto resources by host name; a host that is "down" refuses connections."""

    def __init__(self) -> None:
        self.hosts: dict[bytes, RequestTraversalAgent] = {}
        self.down: set[bytes] = set()

    def add(self, host: str, resource: Resource) -> None:
        self.hosts[host.encode()] = RequestTraversalAgent(resource)

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Any = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        host = uri.split(b"/")[2]
        if host in self.down or host not in self.hosts:
            return fail(ConnectionRefusedError("down"))
        return self.hosts[host].request(method, uri, headers, bodyProducer)

    def flush(self) -> None:
        for agent in self.hosts.values():
            agent.flush()


class AppserviceHomeserver(TestHomeserver):
    """A harness homeserver with appservices, its services started, on a chosen data dir."""

    def __init__(
        self,
        test_case: SynchronousTestCase,
        data_dir: str,
        registration_files: list[str],
        agent: MemoryAgent,
        *,
        config_overrides: Mapping[str, Any] | None = None,
        start: bool = True,
    ) -> None:
        overrides = dict(_TEST_DEFAULTS)
        overrides["app_service_config_files"] = registration_files
        overrides.update(config_overrides or {})
        config = config_for_tests("test", data_dir, **overrides)
        clock = MemoryReactorClock()
        db = Database.inline(Engine.SQLITE, os.path.join(data_dir, "homeserver.db"))
        test_case.successResultOf(Deferred.fromCoroutine(db.prepare()))
        hs = build_homeserver(
            config,
            reactor=clock,
            clock=clock,
            database=db,
            signing_key=generate_signing_key("test"),
            run_in_thread=run_inline,
            appservice_agent=agent,
        )
        super().__init__(test_case, hs)
        self.agent = agent
        assert hs.appservices is not None and hs.sync_services is not None
        self.appservices = hs.appservices
        self._started: list[Any] = []
        self._closed = False
        test_case.addCleanup(self.shutdown)
        if start:
            self.start()

    def start(self) -> None:
        assert self.hs.sync_services is not None
        for svc in [self.hs.sync_services, *self.appservices.services]:
            svc.startService()
            self._started.append(svc)
        self.pump()

    def shutdown(self) -> None:
        """Stop the services and close the database (a clean stop)."""
        if self._closed:
            return
        self._closed = True
        for svc in reversed(self._started):
            d = svc.stopService()
            if isinstance(d, Deferred):
                self.pump()
                d.addErrback(lambda f: None)
        self._started = []
        self.db.close()

    def crash(self) -> None:
        """Drop everything without stopping anything (the database file stays)."""
        self._closed = True
        self.db.close()

    def pump(self, rounds: int = 30) -> None:
        """Let in-memory HTTP and zero-delay calls run until things settle."""
        for _ in range(rounds):
            self.clock.advance(0)
            self.agent.flush()
            self.treq.flush()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump()

    def send_text(self, token: str, room_id: str, body: str, txn: str | None = None) -> str:
        status, answer = self.request(
            "PUT",
            f"/rooms/{room_id}/send/m.room.message/{txn or body}",
            {"msgtype": "m.text", "body": body},
            token=token,
        )
        assert status == 200, (status, answer)
        event_id: str = answer["event_id"]
        return event_id
