"""A started homeserver whose HTTP pushers talk to an in-memory push gateway."""

from __future__ import annotations

import json
import os
from typing import Any

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from ruma.accounts import run_inline
from ruma.config import config_for_tests
from ruma.protocol.signing import generate_signing_key
from ruma.storage.database import Database, Engine
from ruma.tap import build_homeserver
from tests.harness import _TEST_DEFAULTS
from tests.sync.helpers import SyncHomeserver


class FakeGateway(Resource):
    """Records each notification POSTed; answers with ``status`` and ``rejected``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.paths: list[bytes] = []
        self.status = 200
        self.rejected: list[str] = []

    def render_POST(self, request: Request) -> bytes:
        self.paths.append(request.path)
        assert request.content is not None
        body = json.loads(request.content.read())
        request.setResponseCode(self.status)
        request.setHeader(b"Content-Type", b"application/json")
        if self.status == 200:
            self.received.append(body)
        return json.dumps({"rejected": self.rejected}).encode()


class PushHomeserver(SyncHomeserver):
    gateway: FakeGateway
    agent: RequestTraversalAgent
    data_dir: str

    def pump(self) -> None:
        """Run next-turn deliveries and in-memory HTTP until nothing is left to do."""
        for _ in range(10):
            self.clock.advance(0)
            self.agent.flush()
            self.treq.flush()

    def join(self, user_id: str, room_id: str) -> None:
        self.run(self.rooms.membership.join(user_id, room_id))


def make_push_homeserver(
    test_case: SynchronousTestCase, data_dir: str | None = None, db: Database | None = None
) -> PushHomeserver:
    """Build and start one; the same ``data_dir`` (or a database on the same data) again
    is a restart. ``db``: a prepared database (default: SQLite in ``data_dir``)."""
    if data_dir is None:
        data_dir = os.path.abspath(test_case.mktemp())
        os.makedirs(data_dir)
    config = config_for_tests("test", data_dir, **_TEST_DEFAULTS)
    clock = MemoryReactorClock()
    clock.advance(1_800_000_000)
    if db is None:
        db = Database.inline(Engine.SQLITE, os.path.join(data_dir, "homeserver.db"))
        test_case.addCleanup(db.close)
        test_case.successResultOf(Deferred.fromCoroutine(db.prepare()))
    gateway = FakeGateway()
    agent = RequestTraversalAgent(gateway)
    hs = build_homeserver(
        config,
        reactor=clock,
        clock=clock,
        database=db,
        signing_key=generate_signing_key("test"),
        run_in_thread=run_inline,
        push_agent=agent,
    )
    for svc in hs.services:
        svc.startService()

    def stop() -> None:
        for svc in reversed(hs.services):
            if svc.running:
                svc.stopService()

    test_case.addCleanup(stop)
    out = PushHomeserver(test_case, hs)
    out.treq = StubTreq(hs.root_resource(("client",)))
    out.gateway = gateway
    out.agent = agent
    out.data_dir = data_dir
    return out
