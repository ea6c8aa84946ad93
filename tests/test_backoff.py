"""The shared retry backoff (ruma.backoff) and the two schedules built on it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.appservice.scheduler import Backoff as AppserviceBackoff
from ruma.backoff import ExponentialBackoff
from ruma.federation.sender.destination import Backoff as FederationBackoff


def _fixed(value: float) -> ExponentialBackoff:
    return ExponentialBackoff(
        initial=1.0, maximum=100.0, factor=3.0, jitter=0.5, random=lambda: value
    )


class ExponentialBackoffTests(SynchronousTestCase):
    def test_growth_and_cap(self) -> None:
        """The nominal delay multiplies by ``factor`` per failure and stops at ``maximum``;
        counts below 1 (and absurdly large ones) do not break it."""
        b = _fixed(0.5)
        self.assertEqual([b.delay(n) for n in range(1, 7)], [1, 3, 9, 27, 81, 100])
        self.assertEqual(b.delay(0), 1.0)
        self.assertEqual(b.delay(-3), 1.0)
        self.assertEqual(b.delay(10**6), 100.0)

    def test_jitter_is_drawn_from_the_injected_random(self) -> None:
        """random() 0 gives the low end (1 - jitter), 1 the high end, 0.5 the nominal delay;
        random is called once per delay."""
        self.assertAlmostEqual(_fixed(0.0).delay(2), 1.5)
        self.assertAlmostEqual(_fixed(1.0).delay(2), 4.5)
        calls: list[int] = []

        def middle() -> float:
            calls.append(1)
            return 0.5

        b = ExponentialBackoff(initial=1.0, maximum=10.0, jitter=0.1, random=middle)
        b.delay(3)
        b.delay(4)
        self.assertEqual(len(calls), 2)

    def test_at_least_is_a_floor_not_a_cap(self) -> None:
        """A peer's Retry-After lifts a shorter delay, even past the cap, and never shortens
        a longer one."""
        b = _fixed(0.5)
        self.assertEqual(b.delay(1, at_least=60.0), 60.0)
        self.assertEqual(b.delay(5, at_least=60.0), 81.0)
        self.assertEqual(b.delay(9, at_least=500.0), 500.0)

    def test_nonsense_parameters_are_refused(self) -> None:
        """A schedule that could never wait, shrink or go negative is an error at once."""
        for kw in (
            {"initial": 0.0, "maximum": 1.0},
            {"initial": 5.0, "maximum": 1.0},
            {"initial": 1.0, "maximum": 2.0, "factor": 0.5},
            {"initial": 1.0, "maximum": 2.0, "jitter": 1.0},
            {"initial": 1.0, "maximum": 2.0, "jitter": -0.1},
        ):
            with self.assertRaises(ValueError, msg=kw):
                ExponentialBackoff(**kw)  # type: ignore[arg-type]


class SchedulesTests(SynchronousTestCase):
    def test_appservice_schedule(self) -> None:
        """Appservices: 2 s doubling to 5 minutes, within +-10%."""
        b = AppserviceBackoff(random=lambda: 0.5)
        self.assertEqual([b.delay(n) for n in range(1, 10)], [2, 4, 8, 16, 32, 64, 128, 256, 300])
        self.assertAlmostEqual(AppserviceBackoff(random=lambda: 0.0).delay(1), 1.8)
        self.assertAlmostEqual(AppserviceBackoff(random=lambda: 1.0).delay(1), 2.2)
        self.assertIsInstance(b, ExponentialBackoff)

    def test_federation_schedule(self) -> None:
        """Federation: 10 s doubling to an hour, within +-20%."""
        b = FederationBackoff(random=lambda: 0.5)
        self.assertEqual(b.delay(1), 10.0)
        self.assertEqual(b.delay(20), 3600.0)
        self.assertAlmostEqual(FederationBackoff(random=lambda: 0.0).delay(1), 8.0)
        self.assertAlmostEqual(FederationBackoff(random=lambda: 1.0).delay(1), 12.0)
        self.assertIsInstance(b, ExponentialBackoff)
