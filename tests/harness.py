"""The shared in-memory homeserver for unit tests.

``make_homeserver(self)`` builds the same object graph as ``twistd ruma`` (through
:func:`ruma.tap.build_homeserver`) on a ``MemoryReactorClock`` and an inline SQLite database
in the test's temp directory, and talks to it over real in-memory HTTP with ``StubTreq``::

    hs = make_homeserver(self)
    alice, token = hs.register("alice")
    status, body = hs.request("GET", "/account/whoami", token=token)

Paths that do not start with ``/_`` or ``/.`` are taken as client API v3 paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IAgent

from ruma.accounts import run_inline
from ruma.config import HomeserverConfig, config_for_tests
from ruma.protocol.signing import generate_signing_key
from ruma.storage.database import Database, Engine
from ruma.tap import Homeserver, build_homeserver

# Tests are not rate limited unless they ask to be (config_overrides with rc_*).
_UNLIMITED = {"per_second": 1000000, "burst_count": 1000000}
_TEST_DEFAULTS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
}


class TestHomeserver:
    """A built homeserver plus helpers that drive it synchronously."""

    def __init__(self, test_case: SynchronousTestCase, hs: Homeserver) -> None:
        self.test_case = test_case
        self.hs = hs
        self.config: HomeserverConfig = hs.config
        self.clock: MemoryReactorClock = hs.clock  # type: ignore[assignment]
        self.db = hs.db
        self.server_name = hs.config.server_name
        self.treq = StubTreq(hs.root_resource(("client", "federation", "keys", "media")))

    def url(self, path: str) -> str:
        if not path.startswith(("/_", "/.")):
            path = "/_matrix/client/v3" + path
        return f"http://{self.server_name}{path}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        raw_body: bytes | None = None,
    ) -> tuple[int, Any]:
        """Send a request and return ``(status, parsed JSON body)`` (None if not JSON)."""
        hdrs: dict[bytes, list[bytes]] = {}
        if token is not None:
            hdrs[b"Authorization"] = [b"Bearer " + token.encode("ascii")]
        data: bytes | None = raw_body
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            hdrs[b"Content-Type"] = [b"application/json"]
        for k, v in (headers or {}).items():
            hdrs[k.encode("ascii")] = [v.encode("utf-8")]
        d = self.treq.request(method, self.url(path), data=data, headers=hdrs)
        self.treq.flush()
        response = self.test_case.successResultOf(d)
        content_d = response.content()
        self.treq.flush()
        content: bytes = self.test_case.successResultOf(content_d)
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = None
        return int(response.code), parsed

    def register(self, localpart: str, password: str = "pw", *, admin: bool = False) -> tuple[str, str]:
        """Create an account (directly, no UIA) and log it in; return ``(user_id, token)``."""
        user_id = self.run(self.hs.accounts.register(localpart, password, admin=admin))
        login = self.run(self.hs.accounts.login(user_id))
        return user_id, login.access_token

    def register_via_api(self, localpart: str, password: str = "pw") -> tuple[str, str]:
        """Create an account through ``POST /register`` with the dummy stage."""
        status, body = self.request(
            "POST",
            "/register",
            {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}},
        )
        if status != 200:
            raise AssertionError(f"register failed: {status} {body}")
        return body["user_id"], body["access_token"]

    def run(self, coro: Any) -> Any:
        """Run a coroutine that completes without the clock advancing; return its result."""
        return self.test_case.successResultOf(Deferred.fromCoroutine(coro))


def make_homeserver(
    test_case: SynchronousTestCase,
    *,
    server_name: str = "test",
    config_overrides: Mapping[str, Any] | None = None,
    federation_agent: IAgent | None = None,
) -> TestHomeserver:
    """A homeserver named ``server_name``; give several the same ``federation_agent``
    (``tests.federation.memory.MemoryFederationAgent``) to let them federate in memory."""
    data_dir = os.path.abspath(test_case.mktemp())
    os.makedirs(data_dir)
    overrides = dict(_TEST_DEFAULTS)
    overrides.update(config_overrides or {})
    config = config_for_tests(server_name, data_dir, **overrides)
    clock = MemoryReactorClock()
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
        federation_agent=federation_agent,
    )
    return TestHomeserver(test_case, hs)
