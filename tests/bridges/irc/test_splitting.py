"""Splitting messages at IRC's 512-byte limit (ruma.bridges.irc.splitting)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.irc.splitting import LINE_LIMIT, max_text_bytes, split_message


class SplittingTests(SynchronousTestCase):
    def test_budget_counts_the_relayed_prefix(self) -> None:
        """The text budget leaves room for ':nick!user@host PRIVMSG #chan :' and CRLF."""
        nick, target = "alice[m]", "#ruma"
        budget = max_text_bytes(nick, target, user="alice", host="h" * 63)
        prefix = f":{nick}!alice@{'h' * 63} PRIVMSG {target} :"
        self.assertEqual(budget, LINE_LIMIT - len(prefix) - 2)
        action = max_text_bytes(nick, target, user="alice", host="h" * 63, ctcp_action=True)
        self.assertEqual(action, budget - len("\x01ACTION \x01"))

    def test_short_and_multiline(self) -> None:
        """Each line of a message is a line on IRC; empty lines are dropped."""
        self.assertEqual(split_message("one\n\ntwo\r\nthree", 100), ["one", "two", "three"])

    def test_words_kept_whole(self) -> None:
        """A long line is cut at the last space that fits."""
        parts = split_message("aaaa bbbb cccc dddd", 10)
        self.assertEqual(parts, ["aaaa bbbb", "cccc dddd"])

    def test_never_breaks_utf8(self) -> None:
        """Multi-byte characters are never cut: each part decodes and fits."""
        text = "é€😀" * 200
        parts = split_message(text, 100)
        self.assertEqual("".join(parts), text)
        for p in parts:
            self.assertLessEqual(len(p.encode("utf-8")), 100)
            p.encode("utf-8").decode("utf-8")

    def test_every_part_fits_a_real_line(self) -> None:
        """With the computed budget, every sent line is at most 512 bytes with its prefix."""
        nick, target = "Some_Long_Nick[m]", "#a-channel"
        budget = max_text_bytes(nick, target)
        text = ("word " * 400) + "ü" * 300
        for p in split_message(text, budget):
            line = f":{nick}!~{nick[:10]}@{'x' * 63} PRIVMSG {target} :{p}\r\n"
            self.assertLessEqual(len(line.encode("utf-8")), LINE_LIMIT)

    def test_formatting_carried_over(self) -> None:
        """Bold that is on at a cut is switched on again at the start of the next part."""
        parts = split_message("\x02" + "bold " * 10, 20)
        self.assertTrue(all(p.startswith("\x02") for p in parts))
