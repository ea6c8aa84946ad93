"""Netsplit debouncing: a mass QUIT that is undone within a window leaves no trace.

When two IRC servers lose each other, every user behind the other one "quits" with a reason
naming the two servers (``irc.a.net irc.b.net``, or ``*.net *.split`` where the network hides
its servers) and comes back with a JOIN when the servers meet again. Relayed naively that is
a leave and a join per user per room. :class:`NetsplitDebouncer` holds such a quit for
``window`` seconds on the injected clock: a JOIN of the same nick to a held channel within the
window cancels both, and only the channels the nick has not come back to by then get a leave.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ruma.bridges.irc.protocol import irc_key

__all__ = ["NetsplitDebouncer", "is_netsplit_reason"]

_HOST = r"(?:\*|[A-Za-z0-9-]+)(?:\.(?:\*|[A-Za-z0-9-]+))+"
_SPLIT = re.compile(rf"^(?:Quit: )?{_HOST} {_HOST}$")


def is_netsplit_reason(reason: str) -> bool:
    """True for a QUIT reason of the form ``server.one server.two`` (or ``*.net *.split``)."""
    return _SPLIT.match(reason.strip()) is not None


@dataclass
class _Held:
    nick: str
    channels: set[str]
    timer: IDelayedCall | None = None
    names: dict[str, str] = field(default_factory=dict)  # channel key -> channel


class NetsplitDebouncer:
    """Holds netsplit quits; ``on_expire(nick, channels)`` gets what was not undone."""

    def __init__(
        self,
        clock: IReactorTime,
        window: float,
        on_expire: Callable[[str, list[str]], None],
    ) -> None:
        self._clock = clock
        self.window = window
        self._on_expire = on_expire
        self._held: dict[str, _Held] = {}

    def quit(self, nick: str, reason: str, channels: Iterable[str]) -> bool:
        """A QUIT: True if it is held (a netsplit and a window), False to relay it now."""
        if self.window <= 0 or not is_netsplit_reason(reason):
            return False
        key = irc_key(nick)
        held = self._held.get(key)
        if held is None:
            held = _Held(nick, set())
            self._held[key] = held
        for ch in channels:
            held.channels.add(irc_key(ch))
            held.names[irc_key(ch)] = ch
        if held.timer is None or not held.timer.active():
            held.timer = self._clock.callLater(self.window, self._expire, key)
        return True

    def rejoined(self, nick: str, channel: str) -> bool:
        """A JOIN: True if it undoes a held quit (relay neither)."""
        key = irc_key(nick)
        held = self._held.get(key)
        if held is None or irc_key(channel) not in held.channels:
            return False
        held.channels.discard(irc_key(channel))
        if not held.channels:
            if held.timer is not None and held.timer.active():
                held.timer.cancel()
            del self._held[key]
        return True

    def is_held(self, nick: str) -> bool:
        return irc_key(nick) in self._held

    def _expire(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is not None and held.channels:
            self._on_expire(held.nick, [held.names[c] for c in sorted(held.channels)])

    def flush(self) -> None:
        """Relay every held quit now (stopping)."""
        for key in list(self._held):
            held = self._held[key]
            if held.timer is not None and held.timer.active():
                held.timer.cancel()
            self._expire(key)
