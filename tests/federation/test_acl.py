"""Server ACL evaluation (m.room.server_acl), as the spec orders the rules."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.acl import ServerAcl, host_of, server_allowed


class AclTests(SynchronousTestCase):
    def test_no_acl_allows_everyone(self) -> None:
        """Without an ACL event every server is allowed."""
        self.assertTrue(server_allowed(None, "evil.example"))

    def test_deny_wins_over_allow(self) -> None:
        """A server matching both lists is denied; others in allow are allowed."""
        acl = ServerAcl.from_content({"allow": ["*"], "deny": ["evil.example", "*.evil.example"]})
        self.assertFalse(acl.allows("evil.example"))
        self.assertFalse(acl.allows("sub.evil.example"))
        self.assertTrue(acl.allows("good.example"))
        self.assertTrue(acl.allows("notevil.example"))

    def test_missing_allow_denies_everyone(self) -> None:
        """No allow list means nobody is allowed (the spec's warning)."""
        self.assertFalse(ServerAcl.from_content({"deny": []}).allows("any.example"))
        self.assertFalse(ServerAcl.from_content({}).allows("any.example"))

    def test_port_is_ignored(self) -> None:
        """evil.example, evil.example:8448 and evil.example:1234 all match 'evil.example'."""
        acl = ServerAcl.from_content({"allow": ["*"], "deny": ["evil.example"]})
        for name in ("evil.example", "evil.example:8448", "evil.example:1234"):
            self.assertFalse(acl.allows(name), name)
        self.assertEqual(host_of("[::1]:8448"), "[::1]")
        self.assertEqual(host_of("1.2.3.4:80"), "1.2.3.4")

    def test_ip_literals(self) -> None:
        """allow_ip_literals false denies IPv4 and IPv6 literals; a non-boolean means true."""
        acl = ServerAcl.from_content({"allow": ["*"], "allow_ip_literals": False})
        self.assertFalse(acl.allows("1.2.3.4"))
        self.assertFalse(acl.allows("1.2.3.4:8448"))
        self.assertFalse(acl.allows("[2001:db8::1]:8448"))
        self.assertTrue(acl.allows("example.org"))
        lenient = ServerAcl.from_content({"allow": ["*"], "allow_ip_literals": "no"})
        self.assertTrue(lenient.allows("1.2.3.4"))

    def test_globs_are_case_insensitive_and_anchored(self) -> None:
        """'?' is one character, '*' any run, the match covers the whole name, any case."""
        acl = ServerAcl.from_content({"allow": ["matrix?.ORG", "*.example.com"]})
        self.assertTrue(acl.allows("Matrix1.org"))
        self.assertFalse(acl.allows("matrix12.org"))
        self.assertFalse(acl.allows("xmatrix1.org"))
        self.assertTrue(acl.allows("a.b.example.com"))
        self.assertFalse(acl.allows("example.com"))

    def test_regex_characters_are_literal(self) -> None:
        """Dots and other regex syntax in globs match only themselves."""
        acl = ServerAcl.from_content({"allow": ["a.b", "x[y]"]})
        self.assertTrue(acl.allows("a.b"))
        self.assertFalse(acl.allows("axb"))
        self.assertTrue(acl.allows("x[y]"))
        self.assertFalse(acl.allows("xy"))

    def test_malformed_content(self) -> None:
        """Non-list allow/deny and non-string entries are ignored, not fatal."""
        acl = ServerAcl.from_content({"allow": ["*", 5, None], "deny": "evil.example"})
        self.assertTrue(acl.allows("evil.example"))
        self.assertFalse(ServerAcl.from_content({"allow": "*"}).allows("a.example"))
