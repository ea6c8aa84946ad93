"""Typed exceptions raised by the pure protocol layer.

These are deliberately not ``MatrixError``s: the protocol library knows nothing about
HTTP status codes or errcodes. The layer above maps them to client/federation errors.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class for every error raised by :mod:`ruma.protocol`."""


class InvalidIdentifier(ProtocolError, ValueError):
    """A Matrix identifier (user, room, event, alias, server name) failed to parse."""


class CanonicalJSONError(ProtocolError, ValueError):
    """A value cannot be represented as (or read as) Matrix canonical JSON."""


class SignatureError(ProtocolError):
    """A signature is missing, malformed, or does not verify."""


class UnsupportedRoomVersion(ProtocolError):
    """The room version identifier is not one we implement."""

    def __init__(self, identifier: object) -> None:
        super().__init__(f"unsupported room version: {identifier!r}")
        self.identifier = identifier


class InvalidEvent(ProtocolError):
    """A PDU does not have the shape its room version requires."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class KeyFormatError(ProtocolError, ValueError):
    """A signing or verify key could not be decoded."""
