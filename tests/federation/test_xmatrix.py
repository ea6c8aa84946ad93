"""X-Matrix request signing and parsing."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.xmatrix import (
    XMatrixError,
    parse_authorization,
    sign_request,
    verify_request,
)
from ruma.protocol.signing import generate_signing_key


class XMatrixTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.key = generate_signing_key("a1")
        self.other = generate_signing_key("b2")

    def _sign(self, content: object = None) -> str:
        return sign_request(
            method="PUT",
            uri="/_matrix/federation/v1/send/1?x=%20y",
            origin="origin.example:8448",
            destination="dest.example",
            content=content,
            key=self.key,
        )

    def test_round_trip_verifies(self) -> None:
        """A header we sign parses back and verifies against the origin's key."""
        header = self._sign({"pdus": [], "edus": []})
        auth = parse_authorization(header)
        self.assertEqual(auth.origin, "origin.example:8448")
        self.assertEqual(auth.destination, "dest.example")
        self.assertEqual(auth.key_id, "ed25519:a1")
        verify_request(
            auth,
            method="PUT",
            uri="/_matrix/federation/v1/send/1?x=%20y",
            our_name="dest.example",
            content={"pdus": [], "edus": []},
            verify_key=self.key.verify_key,
        )

    def test_tampered_body_fails(self) -> None:
        """Changing the body, URI or method after signing breaks the signature."""
        auth = parse_authorization(self._sign({"a": 1}))
        for method, uri, content in [
            ("PUT", "/_matrix/federation/v1/send/1?x=%20y", {"a": 2}),
            ("PUT", "/_matrix/federation/v1/send/2?x=%20y", {"a": 1}),
            ("POST", "/_matrix/federation/v1/send/1?x=%20y", {"a": 1}),
        ]:
            with self.assertRaises(XMatrixError):
                verify_request(
                    auth,
                    method=method,
                    uri=uri,
                    our_name="dest.example",
                    content=content,
                    verify_key=self.key.verify_key,
                )

    def test_wrong_key_and_wrong_destination_fail(self) -> None:
        """Another server's key does not verify, nor does a header addressed elsewhere."""
        auth = parse_authorization(self._sign())
        common = {"method": "PUT", "uri": "/_matrix/federation/v1/send/1?x=%20y", "content": None}
        with self.assertRaises(XMatrixError):
            verify_request(auth, our_name="dest.example", verify_key=self.other.verify_key, **common)  # type: ignore[arg-type]
        with self.assertRaises(XMatrixError):
            verify_request(auth, our_name="elsewhere", verify_key=self.key.verify_key, **common)  # type: ignore[arg-type]

    def test_parses_unquoted_and_legacy_forms(self) -> None:
        """Unquoted tokens, odd spacing, a missing destination and escapes are understood."""
        auth = parse_authorization(
            'x-matrix  origin=a.example, key="ed25519:k" ,sig="s\\"ig"'
        )
        self.assertEqual((auth.origin, auth.destination, auth.key_id, auth.signature),
                         ("a.example", None, "ed25519:k", 's"ig'))

    def test_malformed_headers_rejected(self) -> None:
        """Other schemes, missing params and garbage all raise XMatrixError."""
        for header in [
            "Bearer abc",
            'X-Matrix origin="a"',
            'X-Matrix origin="a",key="k"',
            'X-Matrix origin="",key="k",sig="s"',
            "X-Matrix ,,,",
            'X-Matrix origin="a,key=k',
        ]:
            with self.assertRaises(XMatrixError, msg=header):
                parse_authorization(header)
