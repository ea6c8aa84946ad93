"""Identifier grammar: server names, user IDs, room IDs, event IDs and room aliases."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import (
    EventID,
    RoomAlias,
    RoomID,
    ServerName,
    UserID,
    is_valid_server_name,
)
from tests.protocol import load_vectors

HASH43 = "Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"


class ServerNameTests(SynchronousTestCase):
    def test_spec_examples(self) -> None:
        """Every valid server name the spec lists parses and prints back unchanged."""
        for name in load_vectors()["server_names"]["valid_examples"]:
            self.assertTrue(is_valid_server_name(name), name)
            self.assertEqual(str(ServerName.parse(name, strict=True)), name)

    def test_parts(self) -> None:
        """host and port are split correctly for DNS, IPv4 and IPv6 literals."""
        self.assertEqual(ServerName.parse("matrix.org"), ServerName("matrix.org", None))
        self.assertEqual(ServerName.parse("matrix.org:8448"), ServerName("matrix.org", 8448))
        self.assertEqual(ServerName.parse("1.2.3.4:1234"), ServerName("1.2.3.4", 1234))
        sn = ServerName.parse("[1234:5678::abcd]:5678")
        self.assertEqual((sn.host, sn.port), ("[1234:5678::abcd]", 5678))
        self.assertEqual(ServerName.parse("[::1]").port, None)
        self.assertEqual(ServerName.parse("localhost").host, "localhost")

    def test_invalid(self) -> None:
        """Malformed server names are rejected."""
        for bad in (
            "",
            ":8448",
            "matrix.org:",
            "matrix.org:port",
            "matrix.org:123456",
            "matrix.org:70000",
            "matrix_org",
            "matrix.org/path",
            "user@matrix.org",
            "[1234:5678::abcd",
            "[1234:5678::abcd]x",
            "[not:ipv6:z]",
            "[]",
            "1234:5678::abcd",
            "matrix.org:8448:1",
            "a" * 256,
            "exämple.org",
            " matrix.org",
        ):
            self.assertFalse(is_valid_server_name(bad), bad)
            self.assertRaises(InvalidIdentifier, ServerName.parse, bad)

    def test_strict_dns_labels(self) -> None:
        """strict=True also enforces DNS label rules that the loose grammar allows."""
        for name in ("-bad.org", "a..b", "bad-.org", "x" * 64 + ".org"):
            self.assertTrue(is_valid_server_name(name), name)
            self.assertFalse(is_valid_server_name(name, strict=True), name)

    def test_error_is_value_error(self) -> None:
        """InvalidIdentifier subclasses ValueError."""
        self.assertRaises(ValueError, ServerName.parse, "")


class UserIDTests(SynchronousTestCase):
    def test_valid_strict(self) -> None:
        """IDs we would mint parse strictly and round-trip through str()."""
        for s in ("@alice:example.org", "@a.b_c=d-e/f+g:1.2.3.4:80", "@0:[::1]:8448"):
            uid = UserID.parse(s, strict=True)
            self.assertEqual(str(uid), s)
        uid = UserID.parse("@alice:example.org:8448")
        self.assertEqual(uid.localpart, "alice")
        self.assertEqual(uid.server, ServerName("example.org", 8448))

    def test_historical_only_lenient(self) -> None:
        """Historical localparts (uppercase, punctuation) pass leniently, not strictly."""
        for s in ("@Alice:example.org", "@a!b#c$:example.org", "@~:x.org", "@[x]:x.org"):
            UserID.parse(s)
            self.assertRaises(InvalidIdentifier, UserID.parse, s, strict=True)

    def test_invalid(self) -> None:
        """Missing sigil, empty/illegal localpart, bad server or too long is rejected."""
        for bad in (
            "alice:example.org",
            "#alice:example.org",
            "@:example.org",
            "@alice",
            "@alice:",
            "@al ice:example.org",
            "@alicé:example.org",
            "@alice:bad_server",
            "@" + "a" * 250 + ":example.org",
        ):
            self.assertRaises(InvalidIdentifier, UserID.parse, bad)
            self.assertFalse(UserID.is_valid(bad))

    def test_length_limit_is_bytes(self) -> None:
        """The 255 limit counts the whole ID in bytes: 255 passes, 256 fails."""
        ok = "@" + "a" * (255 - len("@:x.org")) + ":x.org"
        self.assertEqual(len(ok), 255)
        UserID.parse(ok, strict=True)
        self.assertRaises(InvalidIdentifier, UserID.parse, "@a" + ok[1:])

    def test_not_a_string(self) -> None:
        """Non-strings raise InvalidIdentifier rather than TypeError."""
        self.assertRaises(InvalidIdentifier, UserID.parse, 5)
        self.assertRaises(InvalidIdentifier, UserID.parse, None)

    @given(st.from_regex(r"[a-z0-9._=\-/+]{1,50}", fullmatch=True))
    def test_strict_grammar_accepted(self, local: str) -> None:
        """Every localpart from the strict grammar is accepted strictly."""
        self.assertEqual(UserID.parse(f"@{local}:example.org", strict=True).localpart, local)

    @given(st.text(max_size=30))
    def test_never_crashes(self, s: str) -> None:
        """Arbitrary text either parses or raises InvalidIdentifier, never anything else."""
        for parser in (UserID, RoomID, EventID, RoomAlias, ServerName):
            for candidate in (s, "@" + s, "!" + s, "$" + s, "#" + s):
                try:
                    parsed = parser.parse(candidate)
                except InvalidIdentifier:
                    continue
                self.assertEqual(type(parsed).parse(str(parsed)), parsed)


class RoomIDTests(SynchronousTestCase):
    def test_classic(self) -> None:
        """'!opaque:server' parses with its server."""
        rid = RoomID.parse("!abc123:matrix.org")
        self.assertEqual((rid.localpart, rid.server), ("abc123", ServerName("matrix.org")))
        self.assertFalse(rid.is_hash_form)
        self.assertEqual(str(rid), "!abc123:matrix.org")

    def test_v12(self) -> None:
        """A v12 room ID is '!' + 43 url-safe base64 characters and has no server."""
        rid = RoomID.parse("!" + HASH43, strict=True)
        self.assertIsNone(rid.server)
        self.assertTrue(rid.is_hash_form)
        self.assertEqual(str(rid), "!" + HASH43)

    def test_invalid(self) -> None:
        """Wrong sigil, server-less non-hash forms and bad servers are rejected."""
        for bad in (
            "abc:matrix.org",
            "!abc",
            "!" + HASH43[:-1],
            "!" + HASH43 + "A",
            "!" + HASH43.replace("-", "+"),
            "!:matrix.org",
            "!abc:",
            "!a\x00b:matrix.org",
        ):
            self.assertRaises(InvalidIdentifier, RoomID.parse, bad)

    def test_lenient_opaque(self) -> None:
        """Leniently any opaque part without ':' or NUL is accepted; strictly not."""
        RoomID.parse("!ü ber:matrix.org")
        self.assertRaises(InvalidIdentifier, RoomID.parse, "!ü ber:matrix.org", strict=True)


class EventIDTests(SynchronousTestCase):
    def test_formats(self) -> None:
        """v1 '$local:server', v3 standard base64 and v4 url-safe base64 IDs all parse."""
        v1 = EventID.parse("$a4ecee13e2accdadf56c1025:example.com", strict=True)
        self.assertEqual(v1.server, ServerName("example.com"))
        v3 = EventID.parse("$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk", strict=True)
        self.assertIsNone(v3.server)
        v4 = EventID.parse("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", strict=True)
        self.assertIsNone(v4.server)
        self.assertEqual(str(v4), "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg")

    def test_invalid(self) -> None:
        """Wrong sigil or empty opaque part is rejected; strict demands real hashes."""
        for bad in ("abc:x.org", "$", "$:x.org", "$a:", "!abc:x.org"):
            self.assertRaises(InvalidIdentifier, EventID.parse, bad)
        self.assertRaises(InvalidIdentifier, EventID.parse, "$short", strict=True)
        EventID.parse("$short")


class RoomAliasTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """Aliases parse into localpart and server and round-trip."""
        alias = RoomAlias.parse("#Room-Name_1:example.org", strict=True)
        self.assertEqual(alias.localpart, "Room-Name_1")
        self.assertEqual(str(alias), "#Room-Name_1:example.org")
        RoomAlias.parse("#ünïcödé:example.org", strict=True)

    def test_invalid(self) -> None:
        """Missing sigil/server, empty localpart, and whitespace (strict) are rejected."""
        for bad in ("room:example.org", "#room", "#:example.org", "#room:bad server"):
            self.assertRaises(InvalidIdentifier, RoomAlias.parse, bad)
        RoomAlias.parse("#a room:example.org")
        self.assertRaises(InvalidIdentifier, RoomAlias.parse, "#a room:example.org", strict=True)
