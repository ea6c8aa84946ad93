"""Registration files: every field checked, errors naming the file and the field."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.appservice.registration import load_registrations, parse_registration
from ruma.config import ConfigError
from tests.appservice.support import registration, write_registration


def _parse(data: Any) -> Any:
    return parse_registration(data, filename="irc.yaml", server_name="test")


class ParseTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """A complete registration parses into its frozen value, namespaces compiled."""
        reg = _parse(
            registration(
                protocols=["irc"],
                receive_ephemeral=True,
                **{"de.sorunome.msc2409.push_ephemeral": True, "org.matrix.msc3202": True},
            )
        )
        self.assertEqual(reg.id, "irc")
        self.assertEqual(reg.sender, "@irc_bot:test")
        self.assertTrue(reg.is_user_in_namespace("@irc_alice:test"))
        self.assertFalse(reg.is_user_in_namespace("@alice:test"))
        self.assertFalse(reg.is_user_in_namespace("@irc_alice:test.evil"))  # full match
        self.assertTrue(reg.is_alias_in_namespace("#irc_chan:test"))
        self.assertFalse(reg.rate_limited)
        self.assertEqual(reg.protocols, ("irc",))
        self.assertTrue(reg.wants_ephemeral)
        self.assertTrue(reg.unstable_ephemeral)
        self.assertTrue(reg.msc3202)

    def test_null_url(self) -> None:
        """``url: null`` is allowed: the appservice gets no transactions."""
        self.assertIsNone(_parse(registration(url=None)).url)

    def test_defaults(self) -> None:
        """rate_limited defaults to true and ephemeral delivery to off."""
        data = registration()
        del data["rate_limited"]
        reg = _parse(data)
        self.assertTrue(reg.rate_limited)
        self.assertFalse(reg.wants_ephemeral)

    def assertBad(self, data: Any, expected: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            _parse(data)
        self.assertIn(expected, str(cm.exception))
        self.assertTrue(str(cm.exception).startswith("irc.yaml: "), str(cm.exception))

    def test_missing_fields(self) -> None:
        """Each required field missing is an error naming it."""
        for field in ("id", "url", "as_token", "hs_token", "sender_localpart", "namespaces"):
            data = registration()
            del data[field]
            self.assertBad(data, f"irc.yaml: {field}: ")

    def test_bad_types_and_values(self) -> None:
        """Wrong types and values name the field, down to the namespace entry."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"id": 3}, "id: must be a string"),
            ({"url": "ftp://x"}, "url: must be an http"),
            ({"as_token": ""}, "as_token: must not be empty"),
            ({"sender_localpart": "Bad Name"}, "sender_localpart: must be"),
            ({"rate_limited": "no"}, "rate_limited: must be true or false"),
            ({"protocols": "irc"}, "protocols: must be a list"),
            ({"protocols": [1]}, "protocols[0]: must be a string"),
            ({"namespaces": {"users": [{"exclusive": True, "regex": "(["}]}},
             "namespaces.users[0].regex: not a valid regular expression"),
            ({"namespaces": {"users": [{"regex": "@a.*"}]}},
             "namespaces.users[0].exclusive: is required"),
            ({"namespaces": {"aliases": [{"exclusive": True}]}},
             "namespaces.aliases[0].regex: is required"),
            ({"namespaces": {"rooms": ["x"]}}, "namespaces.rooms[0]: must be a mapping"),
            ({"namespaces": {"people": []}}, "namespaces.people: unknown namespace kind"),
            ({"namespaces": []}, "namespaces: must be a mapping"),
        ]
        for change, expected in cases:
            data = registration()
            data.update(change)
            self.assertBad(data, expected)

    def test_not_a_mapping(self) -> None:
        """A file that is not a mapping is refused with its name."""
        self.assertBad(["id"], "must be a YAML mapping")


class FilesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def test_load(self) -> None:
        """Several files load together."""
        a = write_registration(self.dir, registration("a", prefix="a_", as_token="1", hs_token="2"))
        b = write_registration(self.dir, registration("b", prefix="b_", as_token="3", hs_token="4"))
        regs = load_registrations([a, b], "test")
        self.assertEqual([r.id for r in regs], ["a", "b"])

    def assertRefused(self, paths: list[str], *expected: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            load_registrations(paths, "test")
        for e in expected:
            self.assertIn(e, str(cm.exception))

    def test_missing_file_and_bad_yaml(self) -> None:
        """An unreadable file or invalid YAML names the file."""
        self.assertRefused([os.path.join(self.dir, "nope.yaml")], "nope.yaml", "cannot read")
        path = os.path.join(self.dir, "broken.yaml")
        with open(path, "w") as f:
            f.write("id: [unclosed\n")
        self.assertRefused([path], "broken.yaml: not valid YAML")

    def test_duplicate_ids_and_tokens(self) -> None:
        """Ids, as_tokens, hs_tokens and sender localparts must be unique across files."""
        base = registration("a", prefix="a_", as_token="t1", hs_token="t2")
        a = write_registration(self.dir, base)
        for change, field in (
            ({"id": "a"}, "id"),
            ({"as_token": "t1"}, "as_token"),
            ({"hs_token": "t1"}, "hs_token"),
            ({"as_token": "t2"}, "as_token"),
        ):
            other = registration("b", prefix="b_", as_token="t3", hs_token="t4")
            other.update(change)
            b = write_registration(self.dir, other, "b.yaml")
            self.assertRefused([a, b], f"b.yaml: {field}: already used by a.yaml")

    def test_exclusive_clash(self) -> None:
        """Two appservices claiming overlapping exclusive namespaces are refused."""
        a = write_registration(self.dir, registration("a", prefix="irc_", as_token="1", hs_token="2"))
        other = registration("b", prefix="b_", as_token="3", hs_token="4")
        other["namespaces"]["users"] = [{"exclusive": True, "regex": "@irc_freenode_.*:test"}]
        b = write_registration(self.dir, other)
        self.assertRefused([a, b], "b.yaml: namespaces.users[0].regex", "overlaps", "a.yaml")

    def test_non_exclusive_overlap_allowed(self) -> None:
        """Overlap is fine when one side is not exclusive (e.g. a bot watching everyone)."""
        a = write_registration(self.dir, registration("a", prefix="irc_", as_token="1", hs_token="2"))
        other = registration("b", prefix="b_", as_token="3", hs_token="4")
        other["namespaces"]["users"] = [{"exclusive": False, "regex": "@.*:test"}]
        b = write_registration(self.dir, other)
        self.assertEqual(len(load_registrations([a, b], "test")), 2)

    def test_sender_inside_anothers_exclusive_namespace(self) -> None:
        """An appservice's sender may not live in another's exclusive user namespace."""
        a = write_registration(self.dir, registration("a", prefix="x", as_token="1", hs_token="2"))
        other = registration("b", prefix="b_", as_token="3", hs_token="4")
        other["sender_localpart"] = "xbridge"
        other["namespaces"]["users"] = []
        b = write_registration(self.dir, other)
        self.assertRefused([a, b], "a.yaml: namespaces.users[0].regex", "@xbridge:test")
