"""One remote server's delivery loop, as an automat state machine.

States (opaque to callers; they only send inputs)::

    Idle ──wake──▶ Sending ──drained──▶ Idle
                      │ failed
                      ▼
    BackingOff ──retry timer / peer_is_back──▶ CatchingUp ──drained──▶ Idle
        ▲                                          │ failed
        └──────────────────────────────────────────┘

- ``wake()``: the sender queued something for this server (in the database).
- ``peer_is_back()``: the server just sent us a request, so it is reachable again: a
  destination backing off retries at once instead of waiting for its timer.
- ``stop()``: cancel the timer or the request in flight (the transaction stays pending in
  the database and is sent again, with the same ID, after a restart).

Sending and CatchingUp run the same loop: send one transaction at a time (through the
injected ``transmit``, which returns False once nothing is left) until the queue is empty.
A failure leaves the transaction pending and moves to BackingOff, whose timer grows
exponentially with jitter (:class:`Backoff`) on the injected clock. CatchingUp is the loop
after an outage: its first delivered transaction marks the server up again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from automat import TypeMachineBuilder, pep614
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ruma.backoff import ExponentialBackoff

__all__ = ["Backoff", "DestinationCore", "DestinationInputs", "RetryLater", "make_destination"]


class RetryLater(Exception):
    """A transaction could not be delivered now; ``retry_after`` (seconds) if the peer said."""

    def __init__(self, msg: str, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Backoff(ExponentialBackoff):
    """The federation retry schedule: 10 s doubling up to an hour, spread by 20% so that
    servers which went down together do not all retry together."""

    initial: float = 10.0
    maximum: float = 3600.0
    jitter: float = 0.2


class DestinationInputs(Protocol):
    """What callers may tell a destination."""

    def wake(self) -> None:
        """Something new is queued for this server."""

    def peer_is_back(self) -> None:
        """The server sent us a request: if we are backing off from it, retry now."""

    def stop(self) -> Deferred[None]:
        """Stop sending; fires once the loop has stopped."""

    def _drained(self) -> None:
        """The loop delivered everything queued."""

    def _failed(self, delay: float) -> None:
        """The loop could not deliver; retry after ``delay`` seconds."""

    def _retry(self) -> None:
        """The backoff timer fired."""


@dataclass
class DestinationCore:
    """What the machine's outputs work with."""

    name: str
    clock: IReactorTime
    # Send one transaction; True if one was delivered, False if nothing was queued.
    transmit: Callable[[], Awaitable[bool]]
    # Record the backoff state: (failures, retry_at_ms or None); failures 0 means up.
    record: Callable[[int, int | None], Awaitable[None]]
    backoff: Backoff = field(default_factory=Backoff)
    failures: int = 0
    # Set by ``wake`` while a loop runs: look at the queue again before stopping.
    more: bool = False
    log: Logger = field(default_factory=lambda: Logger(namespace=__name__))
    # Observers for tests and metrics: called with the delay of each backoff.
    on_backoff: Callable[[float], None] | None = None

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)


async def _loop(c: DestinationInputs, s: DestinationCore) -> None:
    try:
        # Never run inside the transition that started us: start on the next reactor turn.
        await deferLater(s.clock, 0, lambda: None)
        while True:
            s.more = False
            delivered = await s.transmit()
            if delivered:
                if s.failures:
                    s.log.info(
                        "{destination} is reachable again after {failures} failed attempts",
                        destination=s.name,
                        failures=s.failures,
                    )
                    s.failures = 0
                    await s.record(0, None)
                continue
            if not s.more:
                break
    except CancelledError:
        return
    except Exception as e:
        s.failures += 1
        retry_after = e.retry_after if isinstance(e, RetryLater) else None
        delay = s.backoff.delay(s.failures, retry_after)
        s.log.warn(
            "cannot deliver to {destination} ({error}); attempt {failures} failed, retrying in"
            " {delay}s",
            destination=s.name,
            error=str(e) or repr(e),
            failures=s.failures,
            delay=round(delay, 1),
        )
        try:
            await s.record(s.failures, s.now_ms() + int(delay * 1000))
        except CancelledError:
            return
        except Exception:
            s.log.failure("recording backoff of {destination}", destination=s.name)
        c._failed(delay)
        return
    c._drained()


def _start_loop(c: DestinationInputs, s: DestinationCore) -> Deferred[None]:
    d = Deferred.fromCoroutine(_loop(c, s))
    d.addErrback(lambda f: s.log.failure("delivery loop of {destination}", f, destination=s.name))
    return d


def _start_timer(c: DestinationInputs, s: DestinationCore, delay: float) -> IDelayedCall:
    if s.on_backoff is not None:
        s.on_backoff(delay)
    return s.clock.callLater(delay, c._retry)


def _build() -> Callable[[DestinationCore], DestinationInputs]:
    machine = TypeMachineBuilder(DestinationInputs, DestinationCore)

    Idle = machine.state("Idle")
    Sending = machine.state("Sending", _start_loop)
    CatchingUp = machine.state("CatchingUp", _start_loop)
    BackingOff = machine.state("BackingOff", _start_timer)
    Stopped = machine.state("Stopped")

    Idle.upon(DestinationInputs.wake).to(Sending).returns(None)
    Idle.upon(DestinationInputs.peer_is_back).loop().returns(None)

    @pep614(Sending.upon(DestinationInputs.wake, nodata=True).loop())
    @pep614(CatchingUp.upon(DestinationInputs.wake, nodata=True).loop())
    def again(c: DestinationInputs, s: DestinationCore) -> None:
        s.more = True

    Sending.upon(DestinationInputs.peer_is_back).loop().returns(None)
    CatchingUp.upon(DestinationInputs.peer_is_back).loop().returns(None)
    Sending.upon(DestinationInputs._drained).to(Idle).returns(None)
    Sending.upon(DestinationInputs._failed).to(BackingOff).returns(None)

    @pep614(CatchingUp.upon(DestinationInputs._drained).to(Idle))
    def caught_up(c: DestinationInputs, s: DestinationCore, running: Deferred[None]) -> None:
        s.log.info("{destination} has caught up", destination=s.name)

    CatchingUp.upon(DestinationInputs._failed).to(BackingOff).returns(None)

    BackingOff.upon(DestinationInputs.wake).loop().returns(None)
    BackingOff.upon(DestinationInputs._retry).to(CatchingUp).returns(None)

    @pep614(BackingOff.upon(DestinationInputs.peer_is_back).to(CatchingUp))
    def retry_now(c: DestinationInputs, s: DestinationCore, timer: IDelayedCall) -> None:
        if timer.active():
            timer.cancel()
        s.log.info("{destination} contacted us: retrying now", destination=s.name)

    @pep614(Idle.upon(DestinationInputs.stop).to(Stopped))
    @pep614(Stopped.upon(DestinationInputs.stop).loop())
    def stopped(c: DestinationInputs, s: DestinationCore) -> Deferred[None]:
        return succeed(None)

    @pep614(Sending.upon(DestinationInputs.stop).to(Stopped))
    @pep614(CatchingUp.upon(DestinationInputs.stop).to(Stopped))
    def stop_loop(
        c: DestinationInputs, s: DestinationCore, running: Deferred[None]
    ) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        running.addBoth(lambda _: done.callback(None) if not done.called else None)
        running.cancel()
        return done

    @pep614(BackingOff.upon(DestinationInputs.stop).to(Stopped))
    def stop_timer(
        c: DestinationInputs, s: DestinationCore, timer: IDelayedCall
    ) -> Deferred[None]:
        if timer.active():
            timer.cancel()
        return succeed(None)

    # A loop cancelled by stop() may still report; a stopped destination ignores everything.
    Stopped.upon(DestinationInputs.wake).loop().returns(None)
    Stopped.upon(DestinationInputs.peer_is_back).loop().returns(None)
    Stopped.upon(DestinationInputs._drained).loop().returns(None)
    Stopped.upon(DestinationInputs._failed).loop().returns(None)
    Stopped.upon(DestinationInputs._retry).loop().returns(None)

    return machine.build()


make_destination: Callable[[DestinationCore], DestinationInputs] = _build()
