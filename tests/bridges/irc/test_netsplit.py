"""Netsplit debouncing on a Clock (ruma.bridges.irc.netsplit)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.irc.netsplit import NetsplitDebouncer, is_netsplit_reason


class NetsplitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[tuple[str, list[str]]] = []
        self.d = NetsplitDebouncer(self.clock, 30, lambda n, c: self.expired.append((n, c)))

    def test_reasons(self) -> None:
        """Two server names (or *.net *.split) are a netsplit; other quits are not."""
        self.assertTrue(is_netsplit_reason("*.net *.split"))
        self.assertTrue(is_netsplit_reason("irc.a.example hub.b.example"))
        self.assertTrue(is_netsplit_reason("Quit: *.net *.split"))
        self.assertFalse(is_netsplit_reason("Quit: going home"))
        self.assertFalse(is_netsplit_reason("Ping timeout: 120 seconds"))
        self.assertFalse(is_netsplit_reason("see example.org"))

    def test_return_within_window_leaves_nothing(self) -> None:
        """A split user back in every channel within the window: no leave at all."""
        self.assertTrue(self.d.quit("Bob", "*.net *.split", ["#a", "#b"]))
        self.clock.advance(10)
        self.assertTrue(self.d.rejoined("bob", "#A"))
        self.assertTrue(self.d.rejoined("BOB", "#b"))
        self.clock.advance(100)
        self.assertEqual(self.expired, [])
        self.assertFalse(self.d.rejoined("bob", "#a"))  # a later join is a real join

    def test_partial_return(self) -> None:
        """Channels not rejoined by the end of the window get their leave then."""
        self.d.quit("bob", "*.net *.split", ["#a", "#b"])
        self.d.rejoined("bob", "#a")
        self.clock.advance(29)
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(self.expired, [("bob", ["#b"])])

    def test_ordinary_quit_not_held(self) -> None:
        """A normal QUIT is relayed at once; a zero window holds nothing."""
        self.assertFalse(self.d.quit("bob", "Quit: bye", ["#a"]))
        zero = NetsplitDebouncer(self.clock, 0, lambda n, c: None)
        self.assertFalse(zero.quit("bob", "*.net *.split", ["#a"]))

    def test_flush(self) -> None:
        """Stopping relays the held quits."""
        self.d.quit("bob", "*.net *.split", ["#a"])
        self.d.flush()
        self.assertEqual(self.expired, [("bob", ["#a"])])
        self.assertEqual(self.clock.getDelayedCalls(), [])
