"""Matrix error codes and the one exception type that turns into a Matrix error response.

This is the only module that spells out ``M_*`` literals. An error that came *from a remote
server* is never re-raised to a client as though it were ours: wrap it in a fresh
``MatrixError`` that says what we were doing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Codes(StrEnum):
    """The spec's standard error codes (client-server API, "Standard error response")."""

    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    USER_LOCKED = "M_USER_LOCKED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    SERVER_NOT_TRUSTED = "M_SERVER_NOT_TRUSTED"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    BAD_STATE = "M_BAD_STATE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    CAPTCHA_NEEDED = "M_CAPTCHA_NEEDED"
    CAPTCHA_INVALID = "M_CAPTCHA_INVALID"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    RESOURCE_LIMIT_EXCEEDED = "M_RESOURCE_LIMIT_EXCEEDED"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    UNABLE_TO_AUTHORISE_JOIN = "M_UNABLE_TO_AUTHORISE_JOIN"
    UNABLE_TO_GRANT_JOIN = "M_UNABLE_TO_GRANT_JOIN"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    UNKNOWN_POS = "M_UNKNOWN_POS"
    URL_NOT_SET = "M_URL_NOT_SET"
    # POST /_matrix/client/v1/appservice/{appserviceId}/ping
    BAD_STATUS = "M_BAD_STATUS"
    CONNECTION_FAILED = "M_CONNECTION_FAILED"
    CONNECTION_TIMEOUT = "M_CONNECTION_TIMEOUT"
    BAD_ALIAS = "M_BAD_ALIAS"
    DUPLICATE_ANNOTATION = "M_DUPLICATE_ANNOTATION"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
    SERVER_NOT_ALLOWED = "M_SERVER_NOT_ALLOWED"


class MatrixError(Exception):
    """An error rendered to the peer as ``{"errcode": ..., "error": ...}`` with ``http_status``.

    ``extra`` carries the fields some codes add, e.g. ``retry_after_ms`` for
    ``M_LIMIT_EXCEEDED`` or ``room_version`` for ``M_INCOMPATIBLE_ROOM_VERSION``.
    """

    def __init__(
        self, http_status: int, errcode: Codes, msg: str, **extra: Any
    ) -> None:
        super().__init__(msg)
        self.http_status = http_status
        self.errcode = errcode
        self.msg = msg
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode.value, "error": self.msg}
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"MatrixError({self.http_status}, {self.errcode.value}, {self.msg!r})"


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, msg)


def not_json(msg: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, Codes.NOT_JSON, msg)


def forbidden(msg: str) -> MatrixError:
    return MatrixError(403, Codes.FORBIDDEN, msg)


def not_found(msg: str) -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, Codes.MISSING_PARAM, msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, msg)


def unrecognized(msg: str = "Unrecognized request") -> MatrixError:
    return MatrixError(404, Codes.UNRECOGNIZED, msg)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    return MatrixError(
        429, Codes.LIMIT_EXCEEDED, "Too many requests", retry_after_ms=retry_after_ms
    )
