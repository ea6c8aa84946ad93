"""User-interactive auth sessions: binding, expiry and the session cap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ruma.accounts import uia
from ruma.accounts.uia import AuthRequired, UIASession, UserInteractiveAuth
from ruma.errors import MatrixError, forbidden


async def ok(auth: Mapping[str, Any], session: UIASession) -> bool:
    return True


async def refuse(auth: Mapping[str, Any], session: UIASession) -> bool:
    raise forbidden("no")


class UIATests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.uia = UserInteractiveAuth(self.clock)

    def attempt(self, auth: Any, flows: Any = (("a",),), **kw: Any) -> Deferred[UIASession]:
        kwargs: dict[str, Any] = {"operation": "op", "user_id": "@u:hs"}
        kwargs.update(kw)
        return Deferred.fromCoroutine(
            self.uia.authenticate(auth, flows=flows, checkers={"a": ok, "b": refuse, "c": ok}, **kwargs)
        )

    def start(self) -> str:
        failure = self.failureResultOf(self.attempt(None), AuthRequired)
        session: str = failure.value.to_json()["session"]
        return session

    def test_first_request_lists_flows(self) -> None:
        """Without auth: 401 with flows, params and a session, and no errcode."""
        body = self.failureResultOf(self.attempt(None), AuthRequired).value.to_json()
        self.assertEqual(body["flows"], [{"stages": ["a"]}])
        self.assertEqual(body["params"], {})
        self.assertNotIn("errcode", body)

    def test_multi_stage_flow(self) -> None:
        """Stages complete one by one; the session reports what is done."""
        sid = self.start()
        flows = (("a", "c"),)
        body = self.failureResultOf(
            self.attempt({"type": "c", "session": sid}, flows=flows), AuthRequired
        ).value.to_json()
        self.assertEqual(body["completed"], ["c"])
        session = self.successResultOf(self.attempt({"type": "a", "session": sid}, flows=flows))
        self.assertEqual(set(session.completed), {"a", "c"})

    def test_completed_listed_and_failure_reported(self) -> None:
        """A failed stage is 401 with its errcode; completed stages are listed."""
        sid = self.start()
        flows = (("a", "b"),)
        body = self.failureResultOf(
            self.attempt({"type": "a", "session": sid}, flows=flows), AuthRequired
        ).value.to_json()
        self.assertEqual(body["completed"], ["a"])
        body = self.failureResultOf(
            self.attempt({"type": "b", "session": sid}, flows=flows), AuthRequired
        ).value.to_json()
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertEqual(body["completed"], ["a"])

    def test_session_is_single_use(self) -> None:
        """A completed session cannot authorise a second request."""
        sid = self.start()
        self.successResultOf(self.attempt({"type": "a", "session": sid}))
        self.failureResultOf(self.attempt({"type": "a", "session": sid}), MatrixError)

    def test_bound_to_user(self) -> None:
        """A session started for one user cannot be completed for another."""
        sid = self.start()
        failure = self.failureResultOf(
            self.attempt({"type": "a", "session": sid}, user_id="@other:hs"), MatrixError
        )
        self.assertEqual(failure.value.http_status, 403)

    def test_expiry(self) -> None:
        """Sessions expire after 30 minutes."""
        sid = self.start()
        self.clock.advance(uia.SESSION_LIFETIME + 1)
        self.failureResultOf(self.attempt({"type": "a", "session": sid}), MatrixError)

    def test_unknown_stage(self) -> None:
        """A stage no flow offers fails with the flows repeated."""
        body = self.failureResultOf(self.attempt({"type": "zzz"}), AuthRequired).value.to_json()
        self.assertEqual(body["errcode"], "M_UNRECOGNIZED")
        self.assertIn("flows", body)

    def test_bad_auth_type(self) -> None:
        """A non-object 'auth' is M_BAD_JSON."""
        failure = self.failureResultOf(self.attempt("x"), MatrixError)
        self.assertEqual(failure.value.errcode.value, "M_BAD_JSON")

    def test_session_cap(self) -> None:
        """Past MAX_SESSIONS the oldest session is forgotten, so memory stays bounded."""
        self.patch(uia, "MAX_SESSIONS", 3)
        first = self.start()
        for _ in range(3):
            self.start()
        self.assertEqual(len(self.uia._sessions), 3)
        self.assertIsNone(self.uia.get_session(first))
