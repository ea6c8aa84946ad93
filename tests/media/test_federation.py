"""Media across servers: served over federation as multipart/mixed, fetched for remote mxc
URIs, cached, and the multipart format itself."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ruma.client.media_remote import build_multipart, filename_from_disposition, parse_multipart
from tests.federation.memory import MemoryFederationAgent
from tests.harness import make_homeserver
from tests.media.helpers import image_size, png, raw_request, upload


class MultipartTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """What we build parses back into the JSON part and the media part with its headers."""
        body, ctype = build_multipart(b"\r\n--binary\r\n", "image/png", "caf\u00e9.png")
        self.assertTrue(ctype.startswith("multipart/mixed; boundary="))
        parts = parse_multipart(body, ctype)
        self.assertEqual(len(parts), 2)
        self.assertEqual((parts[0][0]["content-type"], json.loads(parts[0][1])), ("application/json", {}))
        self.assertEqual(parts[1][1], b"\r\n--binary\r\n")
        self.assertEqual(parts[1][0]["content-type"], "image/png")
        self.assertEqual(filename_from_disposition(parts[1][0]["content-disposition"]), "caf\u00e9.png")

    def test_disposition_forms(self) -> None:
        """Quoted, bare and RFC 5987 file names are read."""
        self.assertEqual(filename_from_disposition('attachment; filename="a b.txt"'), "a b.txt")
        self.assertEqual(filename_from_disposition("inline; filename=x.bin"), "x.bin")
        self.assertIsNone(filename_from_disposition("inline"))

    def test_no_boundary(self) -> None:
        """A multipart type without a boundary is an error."""
        self.assertRaises(ValueError, parse_multipart, b"", "multipart/mixed")


class RemoteMediaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = MemoryFederationAgent()
        self.a = make_homeserver(self, server_name="a.test", federation_agent=self.net)
        self.b = make_homeserver(self, server_name="b.test", federation_agent=self.net)
        for hs in (self.a, self.b):
            self.net.add_server(hs.server_name, hs.hs.root_resource(("federation", "keys")))
        _, self.a_token = self.a.register("alice")
        _, self.b_token = self.b.register("bob")

    def get(self, hs: object, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
        from tests.harness import TestHomeserver

        assert isinstance(hs, TestHomeserver)
        d_result: list[tuple[int, dict[str, str], bytes]] = []
        # Requests that go through federation need the in-memory network flushed too.
        orig_flush = hs.treq.flush

        def flush() -> None:
            orig_flush()
            self.net.flush()
            orig_flush()

        hs.treq.flush = flush  # type: ignore[method-assign]
        try:
            d_result.append(raw_request(hs, "GET", path, token=token))
        finally:
            hs.treq.flush = orig_flush  # type: ignore[method-assign]
        return d_result[0]

    def test_remote_download_and_cache(self) -> None:
        """bob on b.test downloads alice's mxc://a.test/... through b.test, which fetches it
        over federation and then serves it from its cache even when a.test is down."""
        mxc = upload(self.a, self.a_token, b"from a", "text/plain", "a.txt")
        path = "/_matrix/client/v1/media/download/" + mxc.removeprefix("mxc://")
        status, headers, body = self.get(self.b, path, self.b_token)
        self.assertEqual((status, body), (200, b"from a"))
        self.assertEqual(headers["content-disposition"], 'inline; filename="a.txt"')
        self.net.down.add("a.test")
        status, _, body = self.get(self.b, path, self.b_token)
        self.assertEqual((status, body), (200, b"from a"))

    def test_remote_thumbnail(self) -> None:
        """A remote image is fetched once and thumbnailed locally."""
        mxc = upload(self.a, self.a_token, png(200, 200), "image/png")
        path = "/_matrix/client/v1/media/thumbnail/" + mxc.removeprefix("mxc://") + "?width=32&height=32&method=crop"
        status, _, body = self.get(self.b, path, self.b_token)
        self.assertEqual(status, 200)
        self.assertEqual(image_size(body), (32, 32))

    def test_remote_missing_and_unreachable(self) -> None:
        """Unknown remote media is 404; an unreachable server is 502."""
        status, _, body = self.get(self.b, "/_matrix/client/v1/media/download/a.test/nosuchmedia", self.b_token)
        self.assertEqual((status, json.loads(body)["errcode"]), (404, "M_NOT_FOUND"))
        self.net.down.add("a.test")
        status, _, _ = self.get(self.b, "/_matrix/client/v1/media/download/a.test/othermedia", self.b_token)
        self.assertEqual(status, 502)

    def test_federation_endpoint_needs_signature(self) -> None:
        """The federation media endpoint refuses unsigned requests."""
        mxc = upload(self.a, self.a_token, b"x")
        media_id = mxc.rsplit("/", 1)[1]
        status, _, _ = raw_request(self.a, "GET", f"/_matrix/federation/v1/media/download/{media_id}")
        self.assertEqual(status, 401)
