"""The ``X-Matrix`` Authorization scheme (server-server API, "Request Authentication").

A request is authenticated by signing the JSON object ``{method, uri, origin, destination,
content?}`` with the origin's server key; the signature travels in the header. These
functions are pure: fetching the origin's key is the caller's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruma.protocol.signing import SigningKey, VerifyKey, sign_json, verify_signed_json

# One auth-param: name=value where value is a quoted string (with backslash escapes) or a
# token. Synapse quotes every value; the spec allows both.
_PARAM = re.compile(
    r'\s*([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^",\s]*))\s*(?:,|$)'
)


class XMatrixError(ValueError):
    """The header is missing, malformed, or does not verify."""


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    origin: str
    destination: str | None
    key_id: str
    signature: str


def signed_request_json(
    method: str, uri: str, origin: str, destination: str, content: Any | None
) -> dict[str, Any]:
    """The object whose signature authenticates a request. ``uri`` is path plus query."""
    obj: dict[str, Any] = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    *,
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any | None,
    key: SigningKey,
) -> str:
    """The ``Authorization`` header value for an outbound request."""
    signed = sign_json(signed_request_json(method, uri, origin, destination, content), origin, key)
    sig = signed["signatures"][origin][key.key_id]
    return (
        f'X-Matrix origin="{_quote(origin)}",destination="{_quote(destination)}",'
        f'key="{_quote(key.key_id)}",sig="{_quote(sig)}"'
    )


def parse_authorization(header: str) -> XMatrixAuth:
    """Parse one ``Authorization`` header value of the X-Matrix scheme."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "x-matrix":
        raise XMatrixError("not an X-Matrix Authorization header")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            raise XMatrixError("malformed X-Matrix parameters")
        name = m.group(1).lower()
        value = _unquote(m.group(2)) if m.group(2) is not None else m.group(3)
        params.setdefault(name, value)
        pos = m.end()
    try:
        origin, key_id, sig = params["origin"], params["key"], params["sig"]
    except KeyError as e:
        raise XMatrixError(f"X-Matrix header lacks {e.args[0]}") from None
    if not origin or not key_id or not sig:
        raise XMatrixError("X-Matrix header has an empty parameter")
    return XMatrixAuth(origin, params.get("destination"), key_id, sig)


def verify_request(
    auth: XMatrixAuth,
    *,
    method: str,
    uri: str,
    our_name: str,
    content: Mapping[str, Any] | list[Any] | None,
    verify_key: VerifyKey,
) -> None:
    """Check the signature of a parsed header; raise :class:`XMatrixError`."""
    if auth.destination is not None and auth.destination != our_name:
        raise XMatrixError(f"request is for {auth.destination}, not for us")
    obj = signed_request_json(method, uri, auth.origin, our_name, content)
    obj["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
    try:
        verify_signed_json(obj, auth.origin, auth.key_id, verify_key)
    except Exception as e:  # SignatureError, or a canonical-JSON failure on odd content
        raise XMatrixError(f"bad X-Matrix signature: {e}") from e


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)
