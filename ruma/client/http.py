"""Parsing request bodies and query strings into typed values, with Matrix errors.

Every helper raises a :class:`~ruma.errors.MatrixError` that names the offending field, so
handlers never build error messages for malformed input themselves.
"""

from __future__ import annotations

import json
from typing import Any, Final

from twisted.web.iweb import IRequest

from ruma.errors import Codes, MatrixError, bad_json, missing_param, not_json

# Larger bodies are refused before parsing. Media uploads do not go through here.
MAX_JSON_BODY: Final = 1024 * 1024

_MISSING: Final = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_body(request: IRequest, limit: int = MAX_JSON_BODY) -> bytes:
    """The raw request body, refusing anything over ``limit`` bytes with 413 M_TOO_LARGE."""
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read(limit + 1)
    if len(data) > limit:
        raise MatrixError(413, Codes.TOO_LARGE, "Request body too large")
    return data


def parse_json_value(request: IRequest, limit: int = MAX_JSON_BODY) -> Any:
    """Any JSON value from the body (M_NOT_JSON if it is not strict JSON)."""
    data = read_body(request, limit)
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise not_json("Content not JSON.") from None


def parse_json_object(request: IRequest, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The body as a JSON object: M_NOT_JSON for non-JSON, M_BAD_JSON for a non-object."""
    value = parse_json_value(request, limit)
    if not isinstance(value, dict):
        raise bad_json("Content must be a JSON object.")
    return value


def parse_json_object_or_empty(request: IRequest) -> dict[str, Any]:
    """Like :func:`parse_json_object`, but an empty body counts as ``{}``.

    Several endpoints (``/logout``, ``/register`` from old clients) are called with no body.
    """
    if not read_body(request).strip():
        return {}
    return parse_json_object(request)


# -- query string ----------------------------------------------------------------------


def _query_values(request: IRequest, name: str) -> list[str]:
    args = request.args or {}
    raw: list[bytes] = args.get(name.encode("ascii"), [])
    out = []
    for v in raw:
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            raise MatrixError(
                400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be UTF-8"
            ) from None
    return out


def query_str(
    request: IRequest, name: str, default: str | None = None, required: bool = False
) -> str | None:
    """The last value of query parameter ``name``."""
    values = _query_values(request, name)
    if not values:
        if required:
            raise missing_param(f"Missing query parameter {name!r}")
        return default
    return values[-1]


def query_list(request: IRequest, name: str) -> list[str]:
    """Every value of a repeated query parameter (``?a=1&a=2``)."""
    return _query_values(request, name)


def query_int(
    request: IRequest, name: str, default: int | None = None, required: bool = False
) -> int | None:
    value = query_str(request, name, required=required)
    if value is None:
        return default
    try:
        if not value.lstrip("-").isdigit():
            raise ValueError
        return int(value)
    except ValueError:
        raise MatrixError(
            400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be an integer"
        ) from None


def query_bool(
    request: IRequest, name: str, default: bool | None = None, required: bool = False
) -> bool | None:
    value = query_str(request, name, required=required)
    if value is None:
        return default
    if value == "true":
        return True
    if value == "false":
        return False
    raise MatrixError(
        400, Codes.INVALID_PARAM, f"Query parameter {name!r} must be 'true' or 'false'"
    )


# -- body fields -------------------------------------------------------------------------


def _field(body: dict[str, Any], name: str, required: bool) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise missing_param(f"Missing parameter {name!r}")
        return _MISSING
    return body[name]


def body_str(
    body: dict[str, Any], name: str, *, required: bool = True, default: str | None = None
) -> str | None:
    """A string field: M_MISSING_PARAM if required and absent, M_BAD_JSON if not a string."""
    value = _field(body, name, required)
    if value is _MISSING:
        return default
    if not isinstance(value, str):
        raise bad_json(f"Parameter {name!r} must be a string")
    return value


def body_required_str(body: dict[str, Any], name: str) -> str:
    value = body_str(body, name, required=True)
    assert value is not None
    return value


def body_int(
    body: dict[str, Any], name: str, *, required: bool = True, default: int | None = None
) -> int | None:
    value = _field(body, name, required)
    if value is _MISSING:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json(f"Parameter {name!r} must be an integer")
    return value


def body_bool(
    body: dict[str, Any], name: str, *, required: bool = True, default: bool | None = None
) -> bool | None:
    value = _field(body, name, required)
    if value is _MISSING:
        return default
    if not isinstance(value, bool):
        raise bad_json(f"Parameter {name!r} must be a boolean")
    return value


def body_dict(
    body: dict[str, Any], name: str, *, required: bool = True
) -> dict[str, Any] | None:
    value = _field(body, name, required)
    if value is _MISSING:
        return None
    if not isinstance(value, dict):
        raise bad_json(f"Parameter {name!r} must be a JSON object")
    return value


def body_list(body: dict[str, Any], name: str, *, required: bool = True) -> list[Any] | None:
    value = _field(body, name, required)
    if value is _MISSING:
        return None
    if not isinstance(value, list):
        raise bad_json(f"Parameter {name!r} must be a JSON array")
    return value


def body_str_list(body: dict[str, Any], name: str, *, required: bool = True) -> list[str] | None:
    value = body_list(body, name, required=required)
    if value is None:
        return None
    if not all(isinstance(v, str) for v in value):
        raise bad_json(f"Parameter {name!r} must be an array of strings")
    return value


def client_ip(request: IRequest) -> str:
    """The client's address (listeners with ``x_forwarded`` already report the proxied one)."""
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    return str(host) if host is not None else "-"
