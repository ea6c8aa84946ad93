"""The token-bucket rate limiter."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ruma.errors import MatrixError
from ruma.ratelimit import Ratelimiter


class RatelimiterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limiter = Ratelimiter(self.clock, per_second=0.5, burst_count=3)

    def test_burst_then_refill(self) -> None:
        """burst_count actions pass at once; the next waits 1/per_second, which it is told."""
        for _ in range(3):
            self.limiter.check("k")
        with self.assertRaises(MatrixError) as cm:
            self.limiter.check("k")
        self.assertEqual(cm.exception.http_status, 429)
        self.assertEqual(cm.exception.to_json()["errcode"], "M_LIMIT_EXCEEDED")
        self.assertEqual(cm.exception.to_json()["retry_after_ms"], 2000)
        self.clock.advance(2)
        self.limiter.check("k")
        self.assertRaises(MatrixError, self.limiter.check, "k")

    def test_keys_are_independent(self) -> None:
        """One key's bucket does not affect another's."""
        for _ in range(3):
            self.limiter.check("a")
        self.limiter.check("b")

    def test_refill_caps_at_burst(self) -> None:
        """A long pause does not bank more than burst_count actions."""
        self.clock.advance(1000)
        for _ in range(3):
            self.limiter.check("k")
        self.assertRaises(MatrixError, self.limiter.check, "k")

    def test_check_without_update_and_record(self) -> None:
        """check(update=False) spends nothing; record() spends unconditionally."""
        for _ in range(10):
            self.limiter.check("k", update=False)
        self.assertTrue(self.limiter.can_do("k"))
        for _ in range(3):
            self.limiter.record("k")
        self.assertFalse(self.limiter.can_do("k"))
        self.assertRaises(MatrixError, self.limiter.check, "k", update=False)

    def test_partial_wait(self) -> None:
        """retry_after_ms is the time until one whole token is back, rounded up."""
        for _ in range(3):
            self.limiter.check("k")
        self.clock.advance(1.5)
        with self.assertRaises(MatrixError) as cm:
            self.limiter.check("k")
        self.assertEqual(cm.exception.to_json()["retry_after_ms"], 500)

    def test_invalid_parameters(self) -> None:
        """A limiter that could never allow anything is a programming error."""
        self.assertRaises(ValueError, Ratelimiter, self.clock, 0, 1)
        self.assertRaises(ValueError, Ratelimiter, self.clock, 1, 0)

    def test_reset(self) -> None:
        """reset() forgets a key's history."""
        for _ in range(3):
            self.limiter.check("k")
        self.limiter.reset("k")
        self.limiter.check("k")
