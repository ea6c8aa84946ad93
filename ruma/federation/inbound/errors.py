"""Why an incoming PDU was refused before it reached the room writer.

Each is an ordinary exception (not a ``MatrixError``): a transaction answers it as the
PDU's ``{"error": ...}`` entry, a fetch drops the event, and a join's caller maps it to
whatever its endpoint answers.
"""

from __future__ import annotations

__all__ = ["BadSignature", "InvalidPDU", "PDUError", "WrongRoom"]


class PDUError(Exception):
    """A PDU that must not be stored. ``reason`` is safe to send back to its origin."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


class InvalidPDU(PDUError):
    """Not a valid event of its room version (shape, size, reference limits)."""


class BadSignature(PDUError):
    """A server whose signature the spec requires did not sign it (with a key valid then)."""


class WrongRoom(PDUError):
    """The event belongs to another room than the one it was fetched or sent for."""
