"""Server ACLs (``m.room.server_acl``): which servers may take part in a room. Pure.

The spec's order: no ACL event → allow; an IP literal with ``allow_ip_literals`` false
→ deny; a ``deny`` glob matches → deny; an ``allow`` glob matches → allow; else deny.
Globs are case-insensitive, ``*`` matches any run of characters and ``?`` one character,
and the server's port is ignored. Malformed content is read defensively: a non-boolean
``allow_ip_literals`` counts as true, non-list ``allow``/``deny`` as empty, non-string
entries are skipped.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["ServerAcl", "host_of"]


def host_of(server_name: str) -> str:
    """The server name without its port (IPv6 literals keep their brackets)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    host, sep, port = server_name.rpartition(":")
    if sep and port.isdigit():
        return host
    return server_name


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _globs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@dataclass(frozen=True, slots=True)
class ServerAcl:
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    allow_ip_literals: bool = True

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> ServerAcl:
        allow_ip = content.get("allow_ip_literals", True)
        return cls(
            allow=_globs(content.get("allow")),
            deny=_globs(content.get("deny")),
            allow_ip_literals=allow_ip if isinstance(allow_ip, bool) else True,
        )

    def allows(self, server_name: str) -> bool:
        host = host_of(server_name)
        if not self.allow_ip_literals and _is_ip_literal(host):
            return False
        if any(_glob(p).fullmatch(host) for p in self.deny):
            return False
        return any(_glob(p).fullmatch(host) for p in self.allow)


def server_allowed(acl_content: Mapping[str, Any] | None, server_name: str) -> bool:
    """Whether ``server_name`` may take part, given the ACL event's content (None: no ACL)."""
    if acl_content is None:
        return True
    return ServerAcl.from_content(acl_content).allows(server_name)


__all__ += ["server_allowed"]
