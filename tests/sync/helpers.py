"""A homeserver for sync tests: the harness's, with its services started, restartable."""

from __future__ import annotations

import json
import os
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ruma.accounts import run_inline
from ruma.config import config_for_tests
from ruma.protocol.signing import generate_signing_key
from ruma.rooms.creation import CreateRoomRequest
from ruma.rooms.service import RoomServices
from ruma.storage.database import Database, Engine
from ruma.sync.service import SyncServices
from ruma.tap import build_homeserver
from tests.harness import _TEST_DEFAULTS, TestHomeserver


class SyncHomeserver(TestHomeserver):
    _rooms: RoomServices | None = None

    @property
    def services(self) -> SyncServices:
        assert self.hs.sync_services is not None
        return self.hs.sync_services

    @property
    def rooms(self) -> RoomServices:
        """The room services (the homeserver's own once wired in tap, else built here on
        the same EventStore as sync)."""
        wired = getattr(self.hs, "rooms", None)
        if wired is not None:
            return wired  # type: ignore[no-any-return]
        if self._rooms is None:
            self._rooms = RoomServices.build(
                db=self.db,
                clock=self.clock,
                server_name=self.server_name,
                signing_key=self.hs.signing_key,
                profiles=self.hs.account_store,
                default_room_version=self.config.default_room_version,
                store=self.services.events,
            )
        return self._rooms

    def create_room(self, creator: str, **kwargs: Any) -> str:
        room_id, _ = self.run(
            self.rooms.creator.create_room(CreateRoomRequest(creator=creator, **kwargs))
        )
        return str(room_id)

    def send(self, user_id: str, room_id: str, body: str = "hi", **content: Any) -> str:
        c = {"msgtype": "m.text", "body": body, **content}
        return str(self.run(self.rooms.messages.send_message(user_id, room_id, "m.room.message", c, None)))

    def start_request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> Deferred[Any]:
        """Send a request and return the Deferred of its response (it may not fire yet)."""
        hdrs: dict[bytes, list[bytes]] = {}
        if token is not None:
            hdrs[b"Authorization"] = [b"Bearer " + token.encode("ascii")]
        data = json.dumps(body).encode() if body is not None else None
        d = self.treq.request(method, self.url(path), data=data, headers=hdrs)
        self.treq.flush()
        return d

    def finish(self, d: Deferred[Any]) -> tuple[int, Any]:
        """Flush pending I/O and return the finished response's ``(status, JSON)``."""
        self.treq.flush()
        response = self.test_case.successResultOf(d)
        content_d = response.content()
        self.treq.flush()
        content = self.test_case.successResultOf(content_d)
        return int(response.code), json.loads(content) if content else None

    def sync(self, token: str, **params: Any) -> dict[str, Any]:
        query = "&".join(f"{k}={_q(v)}" for k, v in params.items())
        status, body = self.request("GET", "/sync" + ("?" + query if query else ""), token=token)
        if status != 200:
            raise AssertionError(f"sync failed: {status} {body}")
        assert isinstance(body, dict)
        return body

    def tick(self) -> None:
        """Let next-turn bus deliveries run."""
        self.clock.advance(0)
        self.treq.flush()


def _q(v: Any) -> str:
    from urllib.parse import quote

    if isinstance(v, dict):
        v = json.dumps(v)
    if isinstance(v, bool):
        v = "true" if v else "false"
    return quote(str(v), safe="")


def make_sync_homeserver(
    test_case: SynchronousTestCase, data_dir: str | None = None, server_name: str = "test"
) -> SyncHomeserver:
    """Build (and start) a homeserver; pass the same ``data_dir`` again for a "restart"."""
    if data_dir is None:
        data_dir = os.path.abspath(test_case.mktemp())
        os.makedirs(data_dir)
    config = config_for_tests(server_name, data_dir, **_TEST_DEFAULTS)
    clock = MemoryReactorClock()
    clock.advance(1_800_000_000)  # a realistic "now" for timestamps
    db = Database.inline(Engine.SQLITE, os.path.join(data_dir, "homeserver.db"))
    test_case.addCleanup(db.close)
    test_case.successResultOf(Deferred.fromCoroutine(db.prepare()))
    hs = build_homeserver(
        config,
        reactor=clock,
        clock=clock,
        database=db,
        signing_key=generate_signing_key("test"),
        run_in_thread=run_inline,
    )
    for svc in hs.services:
        svc.startService()

    def stop() -> None:
        for svc in reversed(hs.services):
            if svc.running:
                svc.stopService()

    test_case.addCleanup(stop)
    out = SyncHomeserver(test_case, hs)
    out.treq = StubTreq(hs.root_resource(("client",)))
    out.data_dir = data_dir  # type: ignore[attr-defined]
    return out
