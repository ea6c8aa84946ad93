"""ClientRouter and request parsing: every outcome is Matrix JSON, with CORS."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from ruma.client.http import (
    body_bool,
    body_int,
    body_str,
    body_str_list,
    parse_json_object,
    query_bool,
    query_int,
    query_list,
    query_str,
)
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import forbidden


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.router = ClientRouter()
        r = self.router

        @r.route("/echo/<a>/<b>", ["GET"])
        async def echo(request: IRequest, a: str, b: str) -> JsonDict:
            return {"a": a, "b": b}

        @r.route("/v1only", ["GET"], versions=("v1",))
        async def v1only(request: IRequest) -> JsonDict:
            return {"v": 1}

        @r.route("/created", ["POST"])
        async def created(request: IRequest) -> tuple[int, JsonDict]:
            return 201, {"ok": True}

        @r.route("/forbidden", ["GET"])
        async def denied(request: IRequest) -> JsonDict:
            raise forbidden("no")

        @r.route("/boom", ["GET"])
        async def boom(request: IRequest) -> JsonDict:
            raise ZeroDivisionError("oops")

        @r.route_raw("/.well-known/test", ["GET"])
        async def raw(request: IRequest) -> JsonDict:
            return {"raw": True}

        @r.route("/body", ["POST"])
        async def body(request: IRequest) -> JsonDict:
            parsed = parse_json_object(request)
            return {
                "s": body_str(parsed, "s"),
                "i": body_int(parsed, "i", required=False),
                "b": body_bool(parsed, "b", required=False),
                "l": body_str_list(parsed, "l", required=False),
            }

        @r.route("/query", ["GET"])
        async def query(request: IRequest) -> JsonDict:
            return {
                "s": query_str(request, "s"),
                "i": query_int(request, "i"),
                "b": query_bool(request, "b"),
                "l": query_list(request, "l"),
                "r": query_str(request, "r", required=True),
            }

        self.treq = StubTreq(r.resource())

    def req(
        self, method: str, path: str, data: bytes | None = None
    ) -> tuple[int, Any, Any]:
        d = self.treq.request(method, "http://hs" + path, data=data)
        self.treq.flush()
        resp = self.successResultOf(d)
        content = self.successResultOf(resp.content())
        return resp.code, json.loads(content) if content else None, resp.headers

    def test_path_args_under_each_version(self) -> None:
        """A route answers under v3 and r0, with decoded path arguments."""
        for version in ("v3", "r0"):
            code, body, _ = self.req("GET", f"/_matrix/client/{version}/echo/x/y")
            self.assertEqual((code, body), (200, {"a": "x", "b": "y"}))

    def test_encoded_slash_stays_in_its_segment(self) -> None:
        """%2F in a path argument is decoded after matching, not used as a separator."""
        code, body, _ = self.req("GET", "/_matrix/client/v3/echo/%21r%3Ahs/a%2Fb")
        self.assertEqual((code, body), (200, {"a": "!r:hs", "b": "a/b"}))

    def test_v1_only(self) -> None:
        """versions=("v1",) registers only the v1 path."""
        self.assertEqual(self.req("GET", "/_matrix/client/v1/v1only")[0], 200)
        self.assertEqual(self.req("GET", "/_matrix/client/v3/v1only")[0], 404)

    def test_status_tuple(self) -> None:
        """A (status, dict) result sets the status."""
        self.assertEqual(self.req("POST", "/_matrix/client/v3/created")[:2], (201, {"ok": True}))

    def test_matrix_error(self) -> None:
        """A MatrixError becomes its status and JSON body."""
        code, body, _ = self.req("GET", "/_matrix/client/v3/forbidden")
        self.assertEqual((code, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_unexpected_error_is_500_and_logged(self) -> None:
        """Any other exception is logged and rendered as 500 M_UNKNOWN, hiding details."""
        code, body, _ = self.req("GET", "/_matrix/client/v3/boom")
        self.assertEqual((code, body["errcode"]), (500, "M_UNKNOWN"))
        self.assertNotIn("oops", body["error"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unknown_path_and_method(self) -> None:
        """Unknown paths are 404 and wrong methods 405, both M_UNRECOGNIZED in JSON."""
        code, body, headers = self.req("GET", "/_matrix/client/v3/nothing")
        self.assertEqual((code, body["errcode"]), (404, "M_UNRECOGNIZED"))
        self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/json"])
        code, body, _ = self.req("DELETE", "/_matrix/client/v3/echo/a/b")
        self.assertEqual((code, body["errcode"]), (405, "M_UNRECOGNIZED"))

    def test_cors_and_options(self) -> None:
        """Every response has CORS headers; OPTIONS is 200 for any path."""
        code, body, headers = self.req("OPTIONS", "/_matrix/client/v3/anything/at/all")
        self.assertEqual((code, body), (200, {}))
        self.assertEqual(headers.getRawHeaders("Access-Control-Allow-Origin"), ["*"])
        self.assertIn("Authorization", headers.getRawHeaders("Access-Control-Allow-Headers")[0])
        _, _, headers = self.req("GET", "/_matrix/client/v3/nothing")
        self.assertEqual(headers.getRawHeaders("Access-Control-Allow-Origin"), ["*"])

    def test_raw_route(self) -> None:
        """route_raw registers an exact path outside the client prefix."""
        self.assertEqual(self.req("GET", "/.well-known/test")[:2], (200, {"raw": True}))

    def test_body_parsing(self) -> None:
        """Typed body getters accept good input and name the field in errors."""
        ok = json.dumps({"s": "x", "i": 3, "b": True, "l": ["a"]}).encode()
        self.assertEqual(
            self.req("POST", "/_matrix/client/v3/body", ok)[:2],
            (200, {"s": "x", "i": 3, "b": True, "l": ["a"]}),
        )
        cases = [
            (b"not json", 400, "M_NOT_JSON"),
            (b'{"s": NaN}', 400, "M_NOT_JSON"),
            (b'{"s": Infinity}', 400, "M_NOT_JSON"),
            (b"[1]", 400, "M_BAD_JSON"),
            (b"{}", 400, "M_MISSING_PARAM"),
            (b'{"s": 1}', 400, "M_BAD_JSON"),
            (b'{"s": "x", "i": true}', 400, "M_BAD_JSON"),
            (b'{"s": "x", "l": [1]}', 400, "M_BAD_JSON"),
            (b"\xff\xfe", 400, "M_NOT_JSON"),
        ]
        for data, status, errcode in cases:
            code, body, _ = self.req("POST", "/_matrix/client/v3/body", data)
            self.assertEqual((code, body["errcode"]), (status, errcode), data)
        code, body, _ = self.req("POST", "/_matrix/client/v3/body", b'{"s": 1}')
        self.assertIn("'s'", body["error"])

    def test_body_size_limit(self) -> None:
        """Bodies over the limit are refused with 413 M_TOO_LARGE."""
        big = b'{"s": "' + b"x" * (1024 * 1024 + 10) + b'"}'
        code, body, _ = self.req("POST", "/_matrix/client/v3/body", big)
        self.assertEqual((code, body["errcode"]), (413, "M_TOO_LARGE"))

    def test_query_parsing(self) -> None:
        """Query getters parse types, repeated values and required parameters."""
        code, body, _ = self.req(
            "GET", "/_matrix/client/v3/query?s=%E2%9C%93&i=-4&b=true&l=1&l=2&r=x"
        )
        self.assertEqual(
            (code, body), (200, {"s": "\u2713", "i": -4, "b": True, "l": ["1", "2"], "r": "x"})
        )
        for qs, errcode in [
            ("r=x&i=z", "M_INVALID_PARAM"),
            ("r=x&b=yes", "M_INVALID_PARAM"),
            ("", "M_MISSING_PARAM"),
        ]:
            code, body, _ = self.req("GET", "/_matrix/client/v3/query?" + qs)
            self.assertEqual((code, body["errcode"]), (400, errcode), qs)


class ConnectionLostTests(SynchronousTestCase):
    def setUp(self) -> None:
        from twisted.internet.defer import Deferred

        self.router = ClientRouter()
        self.pending: Deferred[JsonDict] = Deferred()

        @self.router.route_raw("/_matrix/federation/v1/send/<txn>", ["PUT"])
        async def send(request: IRequest, txn: str) -> JsonDict:
            return await self.pending

    def connect(self) -> tuple[Any, Any]:
        from twisted.internet.testing import MemoryReactorClock, StringTransport
        from twisted.web.server import Site

        # The channel's idle timer must run on a test clock, not the global reactor, or it
        # outlives this synchronous test and dirties the next test that uses the reactor.
        site = Site(self.router.resource(), reactor=MemoryReactorClock())
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(
            b"PUT /_matrix/federation/v1/send/1 HTTP/1.1\r\nHost: hs\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        return channel, transport

    def test_hang_up_cancels_quietly(self) -> None:
        """A peer hanging up (or our shutdown closing its connection) while the handler
        still awaits: Klein cancels the handler, and that is logged as information, not
        as an unhandled error (Ruma's log showed 'Unhandled error in PUT .../send/...'
        with a CancelledError each time Synapse's transaction was cut by a restart)."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        logged: list[dict[str, Any]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        channel, _ = self.connect()
        self.assertFalse(self.pending.called)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(self.pending.called, "the handler's await was cancelled")
        from twisted.internet.defer import CancelledError

        self.assertEqual(self.flushLoggedErrors(CancelledError), [])
        levels = {e.get("log_level").name for e in logged if e.get("log_level") is not None}
        self.assertNotIn("critical", levels)
        self.assertNotIn("error", levels)

    def test_cancel_without_hang_up_is_still_an_error(self) -> None:
        """A CancelledError while the connection is open is a bug and answers 500."""
        from twisted.internet.defer import CancelledError

        channel, transport = self.connect()
        self.pending.cancel()
        self.assertIn(b"500", transport.value().split(b"\r\n")[0])
        self.assertEqual(len(self.flushLoggedErrors(CancelledError)), 1)
