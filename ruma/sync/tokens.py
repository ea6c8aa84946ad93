"""Sync tokens: a position in the one global stream, written ``s<position>``.

Everything a sync returns (room events, typing, receipts, presence, account data) takes a
position in the same ``stream`` table, so one number says exactly what a client has seen.
Positions live in the database, so a token handed out before a restart means the same after
it. The same token is a valid ``from`` for ``/messages`` (``prev_batch``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ruma.errors import invalid_param

_TOKEN = re.compile(r"^s(\d{1,18})$")


@dataclass(frozen=True, slots=True, order=True)
class StreamToken:
    position: int

    def __str__(self) -> str:
        return f"s{self.position}"

    @classmethod
    def parse(cls, token: str, param: str = "since") -> StreamToken:
        """Parse ``s<position>``; anything else is 400 M_INVALID_PARAM naming ``param``."""
        m = _TOKEN.match(token)
        if m is None:
            raise invalid_param(f"Invalid {param} token {token!r}")
        return cls(int(m.group(1)))
