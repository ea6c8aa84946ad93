"""One peer's retrying delivery loop, as an automat state machine.

Federation destinations (:mod:`ruma.federation.sender`) and appservices
(:mod:`ruma.appservice.scheduler`) are delivered to the same way: a durable queue in the
database, drained one transaction at a time, with a backoff when the peer fails::

    Idle ──wake──▶ Sending ──drained──▶ Idle
                      │ failed
                      ▼
    BackingOff ──retry timer / peer_is_back──▶ CatchingUp ──drained──▶ Idle
        ▲                                          │ failed
        └──────────────────────────────────────────┘

- ``wake()``: something new is queued for this peer (in the database).
- ``peer_is_back()``: the peer just showed it is reachable (a server sent us a request, an
  appservice answered a ping): a peer being backed off from is retried at once instead of
  after its timer.
- ``stop()``: cancel the timer or the request in flight (the transaction stays pending in
  the database and is sent again, with the same ID, after a restart).

Sending and CatchingUp run the same loop: send one transaction at a time (through the
injected ``transmit``, which returns False once nothing is left) until the queue is empty.
A failure leaves the transaction pending and moves to BackingOff, whose timer is the
peer's :class:`~ruma.backoff.ExponentialBackoff` on the injected clock (at least the
``retry_after`` of a :class:`RetryLater`). CatchingUp is the loop after an outage: its first
delivered transaction marks the peer up again. States are opaque: callers send inputs.
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

__all__ = ["DeliveryCore", "DeliveryInputs", "RetryLater", "make_delivery"]


class RetryLater(Exception):
    """A transaction could not be delivered now; ``retry_after`` (seconds) if the peer said."""

    def __init__(self, msg: str, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class DeliveryInputs(Protocol):
    """What callers may tell a peer's delivery loop."""

    def wake(self) -> None:
        """Something new is queued for this peer."""

    def peer_is_back(self) -> None:
        """The peer showed it is reachable: if we are backing off from it, retry now."""

    def stop(self) -> Deferred[None]:
        """Stop sending; fires once the loop has stopped."""

    def _drained(self) -> None:
        """The loop delivered everything queued."""

    def _failed(self, delay: float) -> None:
        """The loop could not deliver; retry after ``delay`` seconds."""

    def _retry(self) -> None:
        """The backoff timer fired."""


@dataclass
class DeliveryCore:
    """What the machine's outputs work with."""

    # The peer, as log lines name it ("remote.example", "appservice irc").
    name: str
    clock: IReactorTime
    # Send one transaction; True if one was delivered, False if nothing was queued.
    transmit: Callable[[], Awaitable[bool]]
    # Record the backoff state: (failures, retry_at_ms or None); failures 0 means up.
    record: Callable[[int, int | None], Awaitable[None]]
    backoff: ExponentialBackoff
    failures: int = 0
    # Set by ``wake`` while a loop runs: look at the queue again before stopping.
    more: bool = False
    log: Logger = field(default_factory=lambda: Logger(namespace=__name__))
    # Observers for tests and metrics: the delay of each backoff; the peer being up again.
    on_backoff: Callable[[float], None] | None = None
    on_up: Callable[[], None] | None = None


async def _loop(c: DeliveryInputs, s: DeliveryCore) -> None:
    try:
        # Never run inside the transition that started us: start on the next reactor turn.
        await deferLater(s.clock, 0, lambda: None)
        while True:
            s.more = False
            if await s.transmit():
                if s.failures:
                    s.log.info(
                        "{peer} is reachable again after {failures} failed attempts",
                        peer=s.name,
                        failures=s.failures,
                    )
                    s.failures = 0
                    await s.record(0, None)
                    if s.on_up is not None:
                        s.on_up()
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
            "cannot deliver to {peer} ({error}); attempt {failures} failed, retrying in {delay}s",
            peer=s.name,
            error=str(e) or repr(e),
            failures=s.failures,
            delay=round(delay, 1),
        )
        try:
            await s.record(s.failures, int((s.clock.seconds() + delay) * 1000))
        except CancelledError:
            return
        except Exception:
            s.log.failure("recording the backoff of {peer}", peer=s.name)
        c._failed(delay)
        return
    c._drained()


def _start_loop(c: DeliveryInputs, s: DeliveryCore) -> Deferred[None]:
    d = Deferred.fromCoroutine(_loop(c, s))
    d.addErrback(lambda f: s.log.failure("delivery loop of {peer}", f, peer=s.name))
    return d


def _start_timer(c: DeliveryInputs, s: DeliveryCore, delay: float) -> IDelayedCall:
    if s.on_backoff is not None:
        s.on_backoff(delay)
    return s.clock.callLater(delay, c._retry)


def _build() -> Callable[[DeliveryCore], DeliveryInputs]:
    machine = TypeMachineBuilder(DeliveryInputs, DeliveryCore)

    Idle = machine.state("Idle")
    Sending = machine.state("Sending", _start_loop)
    CatchingUp = machine.state("CatchingUp", _start_loop)
    BackingOff = machine.state("BackingOff", _start_timer)
    Stopped = machine.state("Stopped")

    Idle.upon(DeliveryInputs.wake).to(Sending).returns(None)

    @pep614(Sending.upon(DeliveryInputs.wake, nodata=True).loop())
    @pep614(CatchingUp.upon(DeliveryInputs.wake, nodata=True).loop())
    def again(c: DeliveryInputs, s: DeliveryCore) -> None:
        s.more = True

    for state in (Idle, Sending, CatchingUp):
        state.upon(DeliveryInputs.peer_is_back).loop().returns(None)
    Sending.upon(DeliveryInputs._drained).to(Idle).returns(None)
    Sending.upon(DeliveryInputs._failed).to(BackingOff).returns(None)

    @pep614(CatchingUp.upon(DeliveryInputs._drained).to(Idle))
    def caught_up(c: DeliveryInputs, s: DeliveryCore, running: Deferred[None]) -> None:
        s.log.info("{peer} has caught up", peer=s.name)

    CatchingUp.upon(DeliveryInputs._failed).to(BackingOff).returns(None)

    BackingOff.upon(DeliveryInputs.wake).loop().returns(None)  # the timer decides
    BackingOff.upon(DeliveryInputs._retry).to(CatchingUp).returns(None)

    @pep614(BackingOff.upon(DeliveryInputs.peer_is_back).to(CatchingUp))
    def retry_now(c: DeliveryInputs, s: DeliveryCore, timer: IDelayedCall) -> None:
        if timer.active():
            timer.cancel()
        s.log.info("{peer} is reachable: retrying now", peer=s.name)

    @pep614(Idle.upon(DeliveryInputs.stop).to(Stopped))
    @pep614(Stopped.upon(DeliveryInputs.stop).loop())
    def stopped(c: DeliveryInputs, s: DeliveryCore) -> Deferred[None]:
        return succeed(None)

    @pep614(Sending.upon(DeliveryInputs.stop).to(Stopped))
    @pep614(CatchingUp.upon(DeliveryInputs.stop).to(Stopped))
    def stop_loop(c: DeliveryInputs, s: DeliveryCore, running: Deferred[None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        running.addBoth(lambda _: done.callback(None) if not done.called else None)
        running.cancel()
        return done

    @pep614(BackingOff.upon(DeliveryInputs.stop).to(Stopped))
    def stop_timer(c: DeliveryInputs, s: DeliveryCore, timer: IDelayedCall) -> Deferred[None]:
        if timer.active():
            timer.cancel()
        return succeed(None)

    # A loop cancelled by stop() may still report; a stopped peer ignores everything.
    for inp in (
        DeliveryInputs.wake,
        DeliveryInputs.peer_is_back,
        DeliveryInputs._drained,
        DeliveryInputs._failed,
        DeliveryInputs._retry,
    ):
        Stopped.upon(inp).loop().returns(None)

    return machine.build()


make_delivery: Callable[[DeliveryCore], DeliveryInputs] = _build()
