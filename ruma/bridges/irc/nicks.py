"""IRC nicknames: valid nicks from Matrix display names, collisions, and case mapping.

RFC 2812 nicks start with a letter or one of ``[]\\`_^{|}`` and go on with those, digits and
``-``. Display names are anything at all, so :func:`nick_from_displayname` transliterates
(NFKD, accents dropped), replaces what is left over, and fits the result to the server's
``NICKLEN`` with the template's fixed parts kept. :func:`nick_candidates` yields the
alternatives tried, in order, when the server says a nick is taken.

Virtual Matrix users for IRC nicks need a valid user-ID localpart (``a-z 0-9 . _ = - /``):
:func:`localpart_for_nick` lowercases with IRC's case mapping and escapes the rest as
``=xx``, so every nick maps to one localpart and back (:func:`nick_for_localpart`).

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterator

__all__ = [
    "irc_lower",
    "is_valid_nick",
    "localpart_for_nick",
    "nick_candidates",
    "nick_for_localpart",
    "nick_from_displayname",
]

_SPECIAL = "[]\\`_^{|}"
_FIRST = set(string.ascii_letters + _SPECIAL)
_REST = _FIRST | set(string.digits + "-")
_LOCALPART_OK = set(string.ascii_lowercase + string.digits + "._-/")

DEFAULT_NICKLEN = 30


def irc_lower(nick: str, casemapping: str = "rfc1459") -> str:
    """The case-folded nick: ``[]\\~`` are the upper case of ``{}|^`` under rfc1459."""
    lowered = nick.lower()
    if casemapping == "ascii":
        return lowered
    table = str.maketrans("[]\\~", "{}|^") if casemapping == "rfc1459" else str.maketrans(
        "[]\\", "{}|"
    )
    return lowered.translate(table)


def is_valid_nick(nick: str, maxlen: int = DEFAULT_NICKLEN) -> bool:
    return (
        0 < len(nick) <= maxlen and nick[0] in _FIRST and all(c in _REST for c in nick[1:])
    )


def _sanitise(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    out: list[str] = []
    for c in ascii_text:
        if c in _REST:
            out.append(c)
        elif c.isspace() or c in ".,:;!?'\"@#$%&*+/<=>()~":
            out.append("_")
    nick = re.sub(r"_{2,}", "_", "".join(out))
    return nick.strip("_-") or nick


def nick_from_displayname(
    displayname: str | None,
    localpart: str,
    template: str = "{displayname}[m]",
    maxlen: int = DEFAULT_NICKLEN,
) -> str:
    """A valid nick from ``template``, with ``{displayname}`` (falling back to the user ID's
    localpart when the name has nothing usable) and ``{localpart}`` filled in."""
    name = _sanitise(displayname or "") or _sanitise(localpart) or "matrix"
    local = _sanitise(localpart) or "matrix"
    fixed = template.replace("{displayname}", "").replace("{localpart}", "")
    fixed = "".join(c for c in fixed if c in _REST)
    budget = max(1, maxlen - len(fixed))
    nick = template.replace("{displayname}", name[:budget]).replace("{localpart}", local[:budget])
    nick = "".join(c for c in nick if c in _REST)
    if not nick or nick[0] not in _FIRST:
        nick = ("M" + nick) if nick else "M"
    return nick[:maxlen]


def nick_candidates(base: str, maxlen: int = DEFAULT_NICKLEN) -> Iterator[str]:
    """``base``, then ``base_``, ``base2`` … ``base99``, each cut to ``maxlen``, then
    ``M`` and 8 digits derived from the base (a last resort that is still a valid nick)."""
    seen: set[str] = set()

    def fit(stem: str, suffix: str) -> str:
        return stem[: max(1, maxlen - len(suffix))] + suffix

    for candidate in [base[:maxlen], fit(base, "_")] + [fit(base, str(n)) for n in range(2, 100)]:
        if candidate not in seen:
            seen.add(candidate)
            yield candidate
    n = sum(ord(c) * 31**i for i, c in enumerate(base)) % 10**8
    while True:
        candidate = f"M{n:08d}"[:maxlen]
        if candidate not in seen:
            seen.add(candidate)
            yield candidate
        n = (n + 1) % 10**8


def localpart_for_nick(nick: str) -> str:
    """The user-ID-safe form of a nick (case-folded, everything else ``=xx``-escaped)."""
    out: list[str] = []
    for c in irc_lower(nick):
        if c in _LOCALPART_OK:
            out.append(c)
        else:
            out.append("".join(f"={b:02x}" for b in c.encode("utf-8")))
    return "".join(out)


def nick_for_localpart(escaped: str) -> str:
    """The (case-folded) nick a :func:`localpart_for_nick` result came from."""
    raw = bytearray()
    i = 0
    while i < len(escaped):
        if escaped[i] == "=" and i + 2 < len(escaped) + 0 and re.fullmatch(
            "[0-9a-f]{2}", escaped[i + 1 : i + 3]
        ):
            raw.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(escaped[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8", "replace")
