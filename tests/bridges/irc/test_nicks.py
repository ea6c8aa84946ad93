"""Nicks from display names, collisions, and nick <-> user ID (ruma.bridges.irc.nicks)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.irc.nicks import (
    irc_lower,
    is_valid_nick,
    localpart_for_nick,
    nick_candidates,
    nick_for_localpart,
    nick_from_displayname,
)


class NickTests(SynchronousTestCase):
    def test_display_names_become_valid_nicks(self) -> None:
        """Spaces, accents, emoji and punctuation give a valid nick with the template."""
        cases = {
            "Alice Liddell": "Alice_Liddell[m]",
            "Zoë Ångström": "Zoe_Angstrom[m]",
            "🦊 fox": "fox[m]",
            "1337 h4x0r": "M1337_h4x0r[m]",
            "bob!": "bob[m]",
        }
        for name, nick in cases.items():
            got = nick_from_displayname(name, "someone")
            self.assertEqual(got, nick, name)
            self.assertTrue(is_valid_nick(got), got)

    def test_empty_name_falls_back_to_localpart(self) -> None:
        """A display name with nothing usable uses the user ID's localpart."""
        self.assertEqual(nick_from_displayname("🦊🦊", "carol"), "carol[m]")
        self.assertEqual(nick_from_displayname(None, "dave.e"), "dave_e[m]")

    def test_length_keeps_the_template_suffix(self) -> None:
        """A long name is cut so the whole nick fits NICKLEN and keeps ``[m]``."""
        nick = nick_from_displayname("A" * 40, "x", maxlen=16)
        self.assertEqual(nick, "A" * 13 + "[m]")
        self.assertEqual(len(nick), 16)

    def test_candidates(self) -> None:
        """On collision: base, base_, base2…, each within NICKLEN; then M+digits."""
        got = list(_take(nick_candidates("alice[m]", 9), 5))
        self.assertEqual(got, ["alice[m]", "alice[m]_", "alice[m]2", "alice[m]3", "alice[m]4"])
        long = list(_take(nick_candidates("x" * 9, 9), 3))
        self.assertEqual(long, ["x" * 9, "x" * 8 + "_", "x" * 8 + "2"])
        everything = list(_take(nick_candidates("ab", 9), 120))
        self.assertEqual(len(set(everything)), 120)
        self.assertTrue(all(is_valid_nick(n, 9) for n in everything))

    def test_case_mapping(self) -> None:
        """rfc1459: []\\~ are the upper case of {}|^."""
        self.assertEqual(irc_lower("Bob[Away]\\~"), "bob{away}|^")
        self.assertEqual(irc_lower("A[", "ascii"), "a[")

    def test_localparts_round_trip(self) -> None:
        """Every nick maps to a valid localpart and back (case-folded)."""
        for nick in ("bob", "Bob[m]", "x|y^z", "under_score", "a-b", "`q`"):
            lp = localpart_for_nick(nick)
            self.assertRegex(lp, r"^[a-z0-9._=/-]+$")
            self.assertEqual(nick_for_localpart(lp), irc_lower(nick))
        self.assertEqual(localpart_for_nick("Bob[m]"), "bob=7bm=7d")


def _take(it, n):  # type: ignore[no-untyped-def]
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x
