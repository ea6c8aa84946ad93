"""Application-service registration files: parsing and validation.

Each file listed in ``app_service_config_files`` is a YAML mapping in the spec's registration
format. :func:`load_registrations` reads them all, checks every field and the rules that span
files (unique ids and tokens, no two appservices claiming the same exclusive namespace), and
raises :class:`~ruma.config.ConfigError` naming the file and the field, e.g.
``irc.yaml: namespaces.users[0].regex: not a valid regular expression (...)``.

The values are frozen: nothing re-reads a registration after startup.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ruma.config import ConfigError, ConfigReader

__all__ = [
    "Namespace",
    "Registration",
    "load_registration",
    "load_registrations",
    "parse_registration",
    "validate_together",
]

NAMESPACE_KINDS = ("users", "aliases", "rooms")
# Unstable names some bridges still write for the stable ``receive_ephemeral``.
_EPHEMERAL_KEYS = ("receive_ephemeral", "de.sorunome.msc2409.push_ephemeral")


@dataclass(frozen=True, slots=True)
class Namespace:
    """One namespace entry: a regex matched against the whole ID."""

    regex: str
    exclusive: bool
    pattern: re.Pattern[str]

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Registration:
    """One application service, as registered."""

    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender_localpart: str
    server_name: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    # Which key(s) ephemeral events go under in transactions: the stable "ephemeral", and the
    # MSC2409 name too when the registration used it.
    unstable_ephemeral: bool = False
    # MSC3202: device masquerading (org.matrix.msc3202.device_id), to-device and device lists.
    msc3202: bool = False
    source: str = ""

    @property
    def sender(self) -> str:
        return f"@{self.sender_localpart}:{self.server_name}"

    def is_user_in_namespace(self, user_id: str, *, exclusive_only: bool = False) -> bool:
        return _any(self.users, user_id, exclusive_only)

    def is_alias_in_namespace(self, alias: str, *, exclusive_only: bool = False) -> bool:
        return _any(self.aliases, alias, exclusive_only)

    def is_room_in_namespace(self, room_id: str, *, exclusive_only: bool = False) -> bool:
        return _any(self.rooms, room_id, exclusive_only)

    def is_interested_in_user(self, user_id: str) -> bool:
        """Its sender or a user in its namespace."""
        return user_id == self.sender or self.is_user_in_namespace(user_id)

    @property
    def wants_ephemeral(self) -> bool:
        return self.receive_ephemeral

    @property
    def wants_to_device(self) -> bool:
        return self.msc3202 or self.receive_ephemeral


def _any(namespaces: Iterable[Namespace], value: str, exclusive_only: bool) -> bool:
    return any(ns.matches(value) for ns in namespaces if ns.exclusive or not exclusive_only)


def _namespaces(r: ConfigReader, kind: str) -> tuple[Namespace, ...]:
    out: list[Namespace] = []
    for i, entry in enumerate(r.get_list(kind)):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{r.filename}: {r.where(kind)}[{i}]: must be a mapping")
        er = ConfigReader(r.filename, f"{r.where(kind)}[{i}]", entry, r.base_dir)
        if "exclusive" not in entry:
            raise er.error("exclusive", "is required (true or false)")
        exclusive = er.get_bool("exclusive", False)
        regex = er.required_str("regex")
        try:
            pattern = re.compile(regex)
        except re.error as e:
            raise er.error("regex", f"not a valid regular expression ({e})") from None
        out.append(Namespace(regex, exclusive, pattern))
    return tuple(out)


def parse_registration(data: Any, *, filename: str, server_name: str) -> Registration:
    """Check one registration's fields; errors name ``filename`` and the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{filename}: must be a YAML mapping of registration fields")
    r = ConfigReader(filename, "", data, os.path.dirname(filename) or ".")
    as_id = r.required_str("id")
    if not as_id:
        raise r.error("id", "must not be empty")
    if "url" not in data:
        raise r.error("url", "is required (null if the appservice wants no transactions)")
    url = r.get_str("url")
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise r.error("url", "must be an http:// or https:// URL, or null")
    as_token = r.required_str("as_token")
    hs_token = r.required_str("hs_token")
    for key, token in (("as_token", as_token), ("hs_token", hs_token)):
        if not token.strip():
            raise r.error(key, "must not be empty")
    sender_localpart = r.required_str("sender_localpart")
    if not sender_localpart or not re.fullmatch(r"[a-z0-9._=/+-]+", sender_localpart):
        raise r.error(
            "sender_localpart", "must be a non-empty user localpart (a-z, 0-9, ._=/+-)"
        )
    if "namespaces" not in data:
        raise r.error("namespaces", "is required (a mapping of users, aliases, rooms)")
    ns = r.sub("namespaces")
    for key in ns.data:
        if key not in NAMESPACE_KINDS:
            raise ns.error(str(key), "unknown namespace kind (expected users, aliases or rooms)")
    protocols = r.get_str_list("protocols")
    ephemeral_keys = [k for k in _EPHEMERAL_KEYS if r.get_bool(k, False)]
    return Registration(
        id=as_id,
        url=url.rstrip("/") if url is not None else None,
        as_token=as_token,
        hs_token=hs_token,
        sender_localpart=sender_localpart,
        server_name=server_name,
        users=_namespaces(ns, "users"),
        aliases=_namespaces(ns, "aliases"),
        rooms=_namespaces(ns, "rooms"),
        rate_limited=r.get_bool("rate_limited", True),
        protocols=tuple(protocols),
        receive_ephemeral=bool(ephemeral_keys),
        unstable_ephemeral="de.sorunome.msc2409.push_ephemeral" in ephemeral_keys,
        msc3202=r.get_bool("org.matrix.msc3202", False),
        source=filename,
    )


def load_registration(path: str, server_name: str) -> Registration:
    """Read and check one registration file."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the registration file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: not valid YAML ({e})") from None
    return parse_registration(data, filename=name, server_name=server_name)


def validate_together(registrations: Sequence[Registration]) -> None:
    """The rules between registrations: unique ids and tokens, no shared exclusive namespace.

    Two exclusive regexes "clash" when either one matches the other's literal example: we
    cannot decide regex intersection in general, so we test each exclusive regex against the
    sender of every other appservice and against the regex text of the others with its
    metacharacters stripped (``@irc_.*:example.org`` -> ``@irc_:example.org``), which catches
    the copy-paste and overlap mistakes operators make.
    """
    seen: dict[tuple[str, str], Registration] = {}
    for reg in registrations:
        for field_name, value in (
            ("id", reg.id),
            ("as_token", reg.as_token),
            ("hs_token", reg.hs_token),
            ("sender_localpart", reg.sender_localpart),
        ):
            kind = "token" if field_name.endswith("_token") else field_name
            other = seen.get((kind, value))
            if other is not None:
                raise ConfigError(
                    f"{reg.source}: {field_name}: already used by {other.source}"
                    f" (appservice {other.id!r}); each must be unique"
                )
            seen[(kind, value)] = reg
    for i, a in enumerate(registrations):
        for b in registrations[i + 1 :]:
            for kind in NAMESPACE_KINDS:
                clash = _clash(getattr(a, kind), getattr(b, kind))
                if clash is not None:
                    ia, ib = clash
                    raise ConfigError(
                        f"{b.source}: namespaces.{kind}[{ib}].regex: exclusive namespace"
                        f" {getattr(b, kind)[ib].regex!r} overlaps {a.source}'s"
                        f" {getattr(a, kind)[ia].regex!r} (appservice {a.id!r})"
                    )
            for x, y in ((a, b), (b, a)):
                for j, ns in enumerate(y.users):
                    if ns.exclusive and ns.matches(x.sender):
                        raise ConfigError(
                            f"{y.source}: namespaces.users[{j}].regex: exclusive namespace"
                            f" {ns.regex!r} contains the sender {x.sender} of {x.source}"
                        )


_META = re.compile(r"\\(.)|[.*+?^$()\[\]{}|]")


def _example(regex: str) -> str:
    """The regex with its operators dropped and escapes resolved: a likely member."""
    return _META.sub(lambda m: m.group(1) or "", regex)


def _clash(
    xs: Sequence[Namespace], ys: Sequence[Namespace]
) -> tuple[int, int] | None:
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            if not (x.exclusive and y.exclusive):
                continue
            if x.regex == y.regex or y.matches(_example(x.regex)) or x.matches(_example(y.regex)):
                return i, j
    return None


def load_registrations(paths: Sequence[str], server_name: str) -> tuple[Registration, ...]:
    """Read every file and check them together."""
    regs = tuple(load_registration(p, server_name) for p in paths)
    validate_together(regs)
    return regs
