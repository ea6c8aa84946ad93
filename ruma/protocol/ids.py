"""Matrix identifiers (spec appendix "Identifier Grammar") as frozen, validated values.

``parse(s, strict=False)`` accepts everything that can legitimately arrive over federation
(the historical grammars); ``strict=True`` is the grammar for identifiers we mint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

from ruma.protocol.errors import InvalidIdentifier

__all__ = [
    "MAX_ID_LENGTH",
    "EventID",
    "RoomAlias",
    "RoomID",
    "ServerName",
    "UserID",
    "is_valid_server_name",
    "is_valid_user_id",
]

MAX_ID_LENGTH = 255  # bytes, for every identifier type (spec: "must not exceed 255 bytes")

_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS = re.compile(r"[A-Za-z0-9.\-]{1,255}")
_PORT = re.compile(r"[0-9]{1,5}")
# Strict user localpart; '+' was added to the grammar in Matrix 1.8.
_USER_STRICT = re.compile(r"[a-z0-9._=\-/+]+")
# Historical user localparts: printable ASCII except ':'.
_USER_HISTORICAL = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_HASH_B64_URLSAFE = re.compile(r"[A-Za-z0-9_\-]{43}")
_HASH_B64_STD = re.compile(r"[A-Za-z0-9+/]{43}")
# What we mint for opaque room/event localparts and what "strict" alias localparts allow.
_OPAQUE_STRICT = re.compile(r"[A-Za-z0-9._~\-=/+]+")
_NO_COLON_NUL = re.compile(r"[^:\x00]+")
_ALIAS_STRICT = re.compile(r"[^:\x00-\x20\x7f]+")


def _fail(kind: str, s: object, why: str) -> InvalidIdentifier:
    return InvalidIdentifier(f"invalid {kind} {s!r}: {why}")


def _check_str(kind: str, s: object) -> str:
    if not isinstance(s, str):
        raise _fail(kind, s, "not a string")
    try:
        n = len(s.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise _fail(kind, s, "not valid Unicode") from e
    if n > MAX_ID_LENGTH:
        raise _fail(kind, s, f"longer than {MAX_ID_LENGTH} bytes")
    return s


def _valid_ipv6(text: str) -> bool:
    if not _IPV6.fullmatch(text):
        return False
    # The grammar is loose; also demand something that is plausibly an address.
    return text.count(":") >= 2


@dataclass(frozen=True, slots=True)
class ServerName:
    """A server name: DNS name, IPv4 literal or ``[IPv6]`` literal, with optional port."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, s: str, *, strict: bool = False) -> Self:
        s = _check_str("server name", s)
        if not s:
            raise _fail("server name", s, "empty")
        port: int | None = None
        if s.startswith("["):
            end = s.find("]")
            if end == -1:
                raise _fail("server name", s, "unterminated IPv6 literal")
            host, rest = s[: end + 1], s[end + 1 :]
            if not _valid_ipv6(host[1:-1]):
                raise _fail("server name", s, "bad IPv6 literal")
            if rest:
                if not rest.startswith(":"):
                    raise _fail("server name", s, "junk after IPv6 literal")
                port = _parse_port(s, rest[1:])
        else:
            host, sep, port_s = s.partition(":")
            if sep:
                port = _parse_port(s, port_s)
            if not _DNS.fullmatch(host):
                raise _fail("server name", s, "bad hostname")
            if strict and not _IPV4.fullmatch(host):
                labels = host.split(".")
                if any(
                    not lab or len(lab) > 63 or lab.startswith("-") or lab.endswith("-")
                    for lab in labels
                ):
                    raise _fail("server name", s, "bad DNS name")
        return cls(host, port)

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def _parse_port(s: str, port_s: str) -> int:
    if not _PORT.fullmatch(port_s):
        raise _fail("server name", s, "bad port")
    port = int(port_s)
    if port > 65535:
        raise _fail("server name", s, "port out of range")
    return port


def is_valid_server_name(s: str, *, strict: bool = False) -> bool:
    """Whether ``s`` matches the server name grammar."""
    try:
        ServerName.parse(s, strict=strict)
    except InvalidIdentifier:
        return False
    return True


def _split(kind: str, sigil: str, s: str, strict: bool) -> tuple[str, ServerName]:
    if not s.startswith(sigil):
        raise _fail(kind, s, f"must start with {sigil!r}")
    local, sep, server = s[1:].partition(":")
    if not sep:
        raise _fail(kind, s, "missing ':server'")
    try:
        return local, ServerName.parse(server, strict=strict)
    except InvalidIdentifier as e:
        raise _fail(kind, s, str(e)) from e


class _Identifier:
    """What every identifier type shares: ``is_valid`` is ``parse`` without the exception."""

    __slots__ = ()

    @classmethod
    def parse(cls, s: str, *, strict: bool = False) -> Self:
        raise NotImplementedError

    @classmethod
    def is_valid(cls, s: str, *, strict: bool = False) -> bool:
        try:
            cls.parse(s, strict=strict)
        except InvalidIdentifier:
            return False
        return True


@dataclass(frozen=True, slots=True)
class UserID(_Identifier):
    """``@localpart:server``."""

    localpart: str
    server: ServerName

    @classmethod
    def parse(cls, s: str, *, strict: bool = False) -> Self:
        s = _check_str("user ID", s)
        local, server = _split("user ID", "@", s, strict)
        pattern = _USER_STRICT if strict else _USER_HISTORICAL
        if not pattern.fullmatch(local):
            raise _fail("user ID", s, "bad localpart")
        return cls(local, server)

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server}"


# User IDs found valid by is_valid_user_id; only valid ones, so the memo cannot let a bad
# one through. Emptied when full.
_valid_user_ids: dict[str, None] = {}


def is_valid_user_id(s: str) -> bool:
    """``UserID.is_valid(s)`` (the lenient grammar), remembered for the user IDs that
    pass: power levels name the same users event after event."""
    if s in _valid_user_ids:
        return True
    if not UserID.is_valid(s):
        return False
    if len(_valid_user_ids) >= 4096:
        _valid_user_ids.clear()
    _valid_user_ids[s] = None
    return True


@dataclass(frozen=True, slots=True)
class RoomID(_Identifier):
    """``!opaque:server`` or, for room version 12, ``!<urlsafe base64 of create event hash>``.

    ``server`` is ``None`` for the v12 form.
    """

    localpart: str
    server: ServerName | None

    @classmethod
    def parse(cls, s: str, *, strict: bool = False) -> Self:
        s = _check_str("room ID", s)
        if not s.startswith("!"):
            raise _fail("room ID", s, "must start with '!'")
        if ":" not in s:
            if not _HASH_B64_URLSAFE.fullmatch(s[1:]):
                raise _fail("room ID", s, "neither '!opaque:server' nor a v12 hash room ID")
            return cls(s[1:], None)
        local, server = _split("room ID", "!", s, strict)
        if not (_OPAQUE_STRICT if strict else _NO_COLON_NUL).fullmatch(local):
            raise _fail("room ID", s, "bad opaque part")
        return cls(local, server)

    @property
    def is_hash_form(self) -> bool:
        """True for v12 room IDs derived from the create event."""
        return self.server is None

    def __str__(self) -> str:
        return f"!{self.localpart}" if self.server is None else f"!{self.localpart}:{self.server}"


@dataclass(frozen=True, slots=True)
class EventID(_Identifier):
    """``$opaque:server`` (room v1/v2) or ``$<base64 reference hash>`` (v3+)."""

    localpart: str
    server: ServerName | None

    @classmethod
    def parse(cls, s: str, *, strict: bool = False) -> Self:
        s = _check_str("event ID", s)
        if not s.startswith("$"):
            raise _fail("event ID", s, "must start with '$'")
        if ":" not in s:
            body = s[1:]
            if strict:
                if not (_HASH_B64_URLSAFE.fullmatch(body) or _HASH_B64_STD.fullmatch(body)):
                    raise _fail("event ID", s, "not a reference hash")
            elif not _NO_COLON_NUL.fullmatch(body):
                raise _fail("event ID", s, "empty or contains NUL")
            return cls(body, None)
        local, server = _split("event ID", "$", s, strict)
        if not (_OPAQUE_STRICT if strict else _NO_COLON_NUL).fullmatch(local):
            raise _fail("event ID", s, "bad opaque part")
        return cls(local, server)

    def __str__(self) -> str:
        return f"${self.localpart}" if self.server is None else f"${self.localpart}:{self.server}"


@dataclass(frozen=True, slots=True)
class RoomAlias(_Identifier):
    """``#localpart:server``."""

    localpart: str
    server: ServerName

    @classmethod
    def parse(cls, s: str, *, strict: bool = False) -> Self:
        s = _check_str("room alias", s)
        local, server = _split("room alias", "#", s, strict)
        if not (_ALIAS_STRICT if strict else _NO_COLON_NUL).fullmatch(local):
            raise _fail("room alias", s, "bad localpart")
        return cls(local, server)

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.server}"
