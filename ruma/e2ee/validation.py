"""Checking the key objects clients publish, before anything is stored.

Pure functions over the request JSON: they raise :class:`~ruma.errors.MatrixError` with the
spec's codes (``M_BAD_JSON`` for a wrong shape, ``M_INVALID_PARAM`` for a key that is not
the requester's, ``M_INVALID_SIGNATURE`` for a signature that does not verify).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruma.errors import Codes, MatrixError, bad_json, invalid_param
from ruma.protocol.errors import KeyFormatError, SignatureError
from ruma.protocol.signing import decode_verify_key, verify_signed_json

ED25519 = "ed25519"
CROSS_SIGNING_USAGES = ("master", "self_signing", "user_signing")
# Field names of /keys/device_signing/upload for each usage.
CROSS_SIGNING_FIELDS = {
    "master": "master_key",
    "self_signing": "self_signing_key",
    "user_signing": "user_signing_key",
}

__all__ = [
    "CROSS_SIGNING_FIELDS",
    "CROSS_SIGNING_USAGES",
    "check_cross_signing_key",
    "check_device_keys",
    "invalid_signature",
    "parse_key_map",
    "signature_valid",
    "split_key_id",
]


def invalid_signature(msg: str = "Invalid signature") -> MatrixError:
    return MatrixError(400, Codes.INVALID_SIGNATURE, msg)


def split_key_id(key_id: Any) -> tuple[str, str]:
    """``"<algorithm>:<id>"`` as ``(algorithm, id)``; M_BAD_JSON unless both are non-empty."""
    if not isinstance(key_id, str):
        raise bad_json("Key IDs must be strings")
    algorithm, sep, ident = key_id.partition(":")
    if not sep or not algorithm or not ident:
        raise bad_json(f"Key ID {key_id!r} is not of the form <algorithm>:<key_id>")
    return algorithm, ident


def signature_valid(
    obj: Mapping[str, Any], signer: str, key_id: str, public_key: str
) -> bool:
    """Whether ``obj`` carries a good signature by ``signer`` with the ed25519 key
    ``key_id`` (``ed25519:<something>``) whose public half is ``public_key``."""
    try:
        verify_key = decode_verify_key(key_id, public_key)
        verify_signed_json(obj, signer, key_id, verify_key)
    except (KeyFormatError, SignatureError, ValueError, TypeError):
        return False
    return True


def _str_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_json(f"{name!r} must be an object of strings")
    return dict(value)


def _signatures(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(v, Mapping) and all(isinstance(s, str) for s in v.values())
        for v in value.values()
    ):
        raise bad_json(f"{name}: 'signatures' must map user IDs to objects of strings")


def check_device_keys(keys: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """The ``device_keys`` of ``/keys/upload``, checked: the requester's own device, and
    self-signed with the device's ed25519 key."""
    if not isinstance(keys, Mapping):
        raise bad_json("'device_keys' must be an object")
    if keys.get("user_id") != user_id:
        raise invalid_param("'device_keys.user_id' must be the user ID you are logged in as")
    if keys.get("device_id") != device_id:
        raise invalid_param("'device_keys.device_id' must be the device you are logged in with")
    algorithms = keys.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("'device_keys.algorithms' must be an array of strings")
    identity = _str_map(keys.get("keys"), "device_keys.keys")
    for key_id in identity:
        split_key_id(key_id)
    _signatures(keys.get("signatures"), "device_keys")
    ed_id = f"{ED25519}:{device_id}"
    public = identity.get(ed_id)
    if public is None:
        raise bad_json(f"'device_keys.keys' has no {ed_id} key")
    if not signature_valid(keys, user_id, ed_id, public):
        raise invalid_signature("The device keys are not signed by the device's ed25519 key")
    out = dict(keys)
    out.pop("unsigned", None)
    return out


def parse_key_map(value: Any, name: str) -> list[tuple[str, str, Any]]:
    """One-time or fallback keys (``{"<algorithm>:<key_id>": key}``) as
    ``(algorithm, key_id, key)``; a key is a string or an object with ``key``."""
    if not isinstance(value, Mapping):
        raise bad_json(f"{name!r} must be an object")
    out: list[tuple[str, str, Any]] = []
    for full_id, key in value.items():
        algorithm, key_id = split_key_id(full_id)
        if isinstance(key, Mapping):
            if not isinstance(key.get("key"), str):
                raise bad_json(f"{name}: key {full_id!r} has no 'key' string")
            _signatures(key.get("signatures"), f"{name}.{full_id}")
        elif not isinstance(key, str):
            raise bad_json(f"{name}: key {full_id!r} must be a string or an object")
        out.append((algorithm, key_id, key))
    return out


def check_cross_signing_key(
    key: Any, user_id: str, usage: str, field: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A cross-signing key object for ``usage`` of ``user_id``: ``(public_key, key)``."""
    name = field or CROSS_SIGNING_FIELDS[usage]
    if not isinstance(key, Mapping):
        raise bad_json(f"{name!r} must be an object")
    if key.get("user_id") != user_id:
        raise invalid_param(f"'{name}.user_id' must be {user_id}")
    usages = key.get("usage")
    if not isinstance(usages, list) or usage not in usages:
        raise invalid_param(f"'{name}.usage' must include {usage!r}")
    keys = _str_map(key.get("keys"), f"{name}.keys")
    if len(keys) != 1:
        raise invalid_param(f"'{name}.keys' must hold exactly one key")
    ((key_id, public),) = keys.items()
    algorithm, ident = split_key_id(key_id)
    if algorithm != ED25519 or ident != public:
        raise invalid_param(f"'{name}.keys' must be ed25519:<public key> -> <public key>")
    try:
        decode_verify_key(key_id, public)
    except (KeyFormatError, ValueError) as e:
        raise invalid_param(f"'{name}' is not a valid ed25519 public key") from e
    _signatures(key.get("signatures"), name)
    out = dict(key)
    out.pop("unsigned", None)
    return public, out
