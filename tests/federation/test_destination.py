"""The per-destination delivery state machine (ruma.delivery, shared with the appservices)
and the federation backoff, with a scripted transmitter.

The machine's state is never inspected: each test sends inputs and watches the outputs
(transmit calls, timers on the clock, backoff records), as callers would.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ruma.delivery import DeliveryCore, DeliveryInputs, RetryLater, make_delivery
from ruma.federation.sender.destination import Backoff


class Script:
    """A transmitter whose every call returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[Deferred[bool]] = []
        self.records: list[tuple[int, int | None]] = []
        self.backoffs: list[float] = []
        self.cancelled: list[Deferred[bool]] = []

    def transmit(self) -> Deferred[bool]:
        d: Deferred[bool] = Deferred(self.cancelled.append)
        self.calls.append(d)
        return d

    async def record(self, failures: int, retry_at_ms: int | None) -> None:
        self.records.append((failures, retry_at_ms))

    @property
    def last(self) -> Deferred[bool]:
        return self.calls[-1]


class DestinationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.script = Script()
        self.dest: DeliveryInputs = make_delivery(
            DeliveryCore(
                name="remote.test",
                clock=self.clock,
                transmit=self.script.transmit,
                record=self.script.record,
                backoff=Backoff(initial=10.0, maximum=3600.0, random=lambda: 0.5),
                on_backoff=self.script.backoffs.append,
            )
        )

    def turn(self) -> None:
        self.clock.advance(0)

    def fail_current(self) -> None:
        self.script.last.errback(RetryLater("connection refused"))
        self.turn()

    def go_down(self) -> None:
        """Idle -> Sending -> BackingOff."""
        self.dest.wake()
        self.turn()
        self.fail_current()

    # -- Idle -------------------------------------------------------------------------------

    def test_idle_wake_starts_sending_on_the_next_turn(self) -> None:
        """wake() in Idle starts the loop, but never inside the caller's call."""
        self.dest.wake()
        self.assertEqual(len(self.script.calls), 0)
        self.turn()
        self.assertEqual(len(self.script.calls), 1)

    def test_idle_peer_is_back_does_nothing(self) -> None:
        """peer_is_back() with nothing owed sends nothing and sets no timer."""
        self.dest.peer_is_back()
        self.turn()
        self.assertEqual(self.script.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idle_stop(self) -> None:
        """stop() in Idle fires at once, and a later wake() does nothing."""
        self.successResultOf(self.dest.stop())
        self.dest.wake()
        self.turn()
        self.assertEqual(self.script.calls, [])

    # -- Sending ----------------------------------------------------------------------------

    def test_sending_loops_until_nothing_is_left(self) -> None:
        """The loop sends transaction after transaction until transmit says the queue is
        empty, then goes idle (a later wake() starts it again)."""
        self.dest.wake()
        self.turn()
        self.script.last.callback(True)
        self.assertEqual(len(self.script.calls), 2)
        self.script.last.callback(False)
        self.assertEqual(len(self.script.calls), 2)
        self.dest.wake()
        self.turn()
        self.assertEqual(len(self.script.calls), 3)

    def test_sending_wake_looks_again_before_going_idle(self) -> None:
        """A wake() while a transaction is in flight makes the loop look at the queue again
        even if that transmit found nothing (the new rows came after it read)."""
        self.dest.wake()
        self.turn()
        self.dest.wake()
        self.script.last.callback(False)
        self.assertEqual(len(self.script.calls), 2)
        self.script.last.callback(False)
        self.assertEqual(len(self.script.calls), 2)

    def test_sending_peer_is_back_is_ignored(self) -> None:
        """peer_is_back() while sending starts no second loop."""
        self.dest.wake()
        self.turn()
        self.dest.peer_is_back()
        self.turn()
        self.assertEqual(len(self.script.calls), 1)

    def test_sending_failure_backs_off(self) -> None:
        """A failed transmit records the destination as down and retries after the first
        backoff delay, not before."""
        self.go_down()
        self.assertEqual(self.script.backoffs, [10.0])
        self.assertEqual(self.script.records[-1][0], 1)
        self.clock.advance(9.9)
        self.assertEqual(len(self.script.calls), 1)
        self.clock.advance(0.1)
        self.turn()
        self.assertEqual(len(self.script.calls), 2)

    def test_sending_stop_cancels_the_request(self) -> None:
        """stop() while sending cancels the transmit in flight and fires; no timer is left
        and nothing more is sent."""
        self.dest.wake()
        self.turn()
        in_flight = self.script.last
        self.successResultOf(self.dest.stop())
        self.assertEqual(self.script.cancelled, [in_flight])
        self.turn()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.script.calls), 1)
        self.assertEqual(self.script.backoffs, [])

    def test_stop_before_the_loop_starts(self) -> None:
        """stop() right after wake() (loop not started yet) sends nothing at all."""
        self.dest.wake()
        self.successResultOf(self.dest.stop())
        self.turn()
        self.assertEqual(self.script.calls, [])

    # -- BackingOff -------------------------------------------------------------------------

    def test_backing_off_wake_waits_for_the_timer(self) -> None:
        """New work while backing off does not hammer the peer: it waits for the timer."""
        self.go_down()
        self.dest.wake()
        self.turn()
        self.assertEqual(len(self.script.calls), 1)

    def test_backing_off_peer_is_back_retries_now(self) -> None:
        """peer_is_back() while backing off retries at once and cancels the timer."""
        self.go_down()
        self.dest.peer_is_back()
        self.turn()
        self.assertEqual(len(self.script.calls), 2)
        self.script.last.callback(False)
        self.clock.advance(3600)
        self.assertEqual(len(self.script.calls), 2)

    def test_backing_off_stop_cancels_the_timer(self) -> None:
        """stop() while backing off cancels the retry timer."""
        self.go_down()
        self.successResultOf(self.dest.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(3600)
        self.assertEqual(len(self.script.calls), 1)

    def test_backoff_grows_until_the_peer_answers(self) -> None:
        """Each failed retry doubles the delay (10, 20, 40, ... capped at an hour); the
        first delivered transaction marks the peer up and resets it."""
        self.go_down()
        for _ in range(12):
            self.clock.advance(self.script.backoffs[-1])
            self.turn()
            self.fail_current()
        self.assertEqual(
            self.script.backoffs,
            [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0]
            + [3600.0] * 4,
        )
        self.clock.advance(3600)
        self.turn()
        self.script.last.callback(True)
        self.assertEqual(self.script.records[-1], (0, None))
        self.script.last.callback(False)
        self.dest.wake()
        self.turn()
        self.fail_current()
        self.assertEqual(self.script.backoffs[-1], 10.0)

    def test_retry_after_from_the_peer_is_honoured(self) -> None:
        """A 429's retry_after longer than the backoff is waited for."""
        self.dest.wake()
        self.turn()
        self.script.last.errback(RetryLater("429", retry_after=120.0))
        self.turn()
        self.assertEqual(self.script.backoffs, [120.0])

    # -- CatchingUp -------------------------------------------------------------------------

    def test_catching_up_drains_then_idles(self) -> None:
        """After the timer, the loop sends the whole backlog (several transactions) and
        then goes idle: no timer is left."""
        self.go_down()
        self.clock.advance(10)
        self.turn()
        self.script.last.callback(True)
        self.script.last.callback(True)
        self.script.last.callback(False)
        self.assertEqual(len(self.script.calls), 4)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_catching_up_failure_backs_off_longer(self) -> None:
        """A failure while catching up backs off again with the next, longer delay."""
        self.go_down()
        self.clock.advance(10)
        self.turn()
        self.fail_current()
        self.assertEqual(self.script.backoffs, [10.0, 20.0])

    def test_catching_up_wake_and_peer_is_back(self) -> None:
        """While catching up, wake() makes the loop look again; peer_is_back() adds nothing."""
        self.go_down()
        self.dest.peer_is_back()
        self.turn()
        self.dest.peer_is_back()
        self.dest.wake()
        self.turn()
        self.assertEqual(len(self.script.calls), 2)
        self.script.last.callback(False)
        self.assertEqual(len(self.script.calls), 3)

    def test_catching_up_stop(self) -> None:
        """stop() while catching up cancels the request in flight."""
        self.go_down()
        self.clock.advance(10)
        self.turn()
        in_flight = self.script.last
        self.successResultOf(self.dest.stop())
        self.assertEqual(self.script.cancelled, [in_flight])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # -- Stopped ----------------------------------------------------------------------------

    def test_stopped_ignores_everything(self) -> None:
        """Once stopped, wake(), peer_is_back() and stop() do nothing (stop fires)."""
        self.successResultOf(self.dest.stop())
        self.dest.wake()
        self.dest.peer_is_back()
        self.successResultOf(self.dest.stop())
        self.clock.advance(3600)
        self.assertEqual(self.script.calls, [])

    def test_unexpected_error_backs_off_too(self) -> None:
        """Any exception from transmit (a bug, a database error) backs off rather than
        killing the loop for good."""
        self.dest.wake()
        self.turn()
        self.script.last.errback(ValueError("oops"))
        self.turn()
        self.assertEqual(self.script.backoffs, [10.0])


class BackoffTests(SynchronousTestCase):
    def test_growth_and_cap(self) -> None:
        """Without jitter: 10 s doubling per failure, capped at one hour."""
        b = Backoff(random=lambda: 0.5)
        self.assertEqual([b.delay(n) for n in range(1, 11)],
                         [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600])
        self.assertEqual(b.delay(1000), 3600)

    def test_jitter_bounds(self) -> None:
        """Jitter keeps every delay within +-20% of the nominal one, both ends reachable."""
        low = Backoff(random=lambda: 0.0)
        high = Backoff(random=lambda: 1.0)
        for n in (1, 5, 20):
            nominal = Backoff(random=lambda: 0.5).delay(n)
            self.assertAlmostEqual(low.delay(n), nominal * 0.8)
            self.assertAlmostEqual(high.delay(n), nominal * 1.2)
        real = Backoff()
        for n in range(1, 30):
            nominal = min(3600.0, 10.0 * 2 ** (n - 1))
            d = real.delay(n)
            self.assertTrue(nominal * 0.8 <= d <= nominal * 1.2, (n, d))

    def test_retry_after(self) -> None:
        """A peer's retry_after is a floor, never a ceiling."""
        b = Backoff(random=lambda: 0.5)
        self.assertEqual(b.delay(1, 60.0), 60.0)
        self.assertEqual(b.delay(5, 60.0), 160.0)
