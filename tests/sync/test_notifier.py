"""The sync notifier: waking by user and room, timeouts, cancellation."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


class NotifierTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.notifier = self.hs.services.notifier
        self.alice, self.atok = self.hs.register("alice")

    def test_cancel_forgets_waiter(self) -> None:
        """Cancelling a wait (the client went away) removes it and its timer."""
        # Other services (e.g. federation's transaction pruner) keep long timers of their own.
        before = set(self.hs.clock.getDelayedCalls())
        d = self.notifier.wait(self.alice, ["!r:test"], self.hs.services.bus.current, 30)
        self.assertEqual(self.notifier.waiting, 1)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(self.notifier.waiting, 0)
        self.assertEqual(
            [
                c
                for c in self.hs.clock.getDelayedCalls()
                if c.active() and c not in before
                and c.getTime() - self.hs.clock.seconds() > 25
            ],
            [],
        )

    def test_disconnect_during_long_poll(self) -> None:
        """A long-polling /sync whose connection drops stops waiting."""
        first = self.hs.sync(self.atok)
        d = self.hs.start_request("GET", f"/sync?since={first['next_batch']}&timeout=30000", self.atok)
        self.assertEqual(self.notifier.waiting, 1)
        d.cancel()
        self.hs.treq.flush()
        self.failureResultOf(d)  # the client side sees its own cancellation
        self.assertEqual(self.notifier.waiting, 0)

    def test_stale_position_returns_at_once(self) -> None:
        """A wait from a position the notifier has already passed fires immediately."""
        self.hs.request("PUT", f"/user/{self.alice}/account_data/x", {}, token=self.atok)
        self.hs.tick()
        d = self.notifier.wait(self.alice, [], 0, 30)
        self.assertTrue(self.successResultOf(d))

    def test_wakes_by_user_and_times_out(self) -> None:
        """A row for the user wakes (True); with nothing relevant the timeout fires (False)."""
        pos = self.hs.services.bus.current
        d = self.notifier.wait(self.alice, [], pos, 30)
        self.hs.request("PUT", f"/user/{self.alice}/account_data/x", {}, token=self.atok)
        self.hs.tick()
        self.assertTrue(self.successResultOf(d))
        d2 = self.notifier.wait(self.alice, [], self.hs.services.bus.current, 30)
        self.hs.clock.advance(30)
        self.assertFalse(self.successResultOf(d2))
