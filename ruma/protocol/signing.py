"""Ed25519 server keys and signing/verifying JSON objects (spec appendix "Signing JSON").

Built on PyNaCl directly so that what gets signed is exactly our canonical JSON, and so
that no function here mutates its argument (``signedjson.sign_json`` does).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing
from nacl.signing import VerifyKey

from ruma.protocol.errors import CanonicalJSONError, KeyFormatError, SignatureError
from ruma.protocol.json import encode_canonical_json, thaw

__all__ = [
    "ED25519",
    "SigningKey",
    "VerifyKey",
    "decode_base64",
    "decode_signing_key",
    "decode_verify_key",
    "encode_base64",
    "encode_verify_key",
    "generate_signing_key",
    "read_signing_keys",
    "sign_json",
    "signing_key_from_seed",
    "verify_signed_json",
    "write_signing_keys",
]

ED25519 = "ed25519"
# Key versions are the part after "ed25519:"; the spec restricts them to [a-zA-Z0-9_].
_KEY_VERSION = re.compile(r"[A-Za-z0-9_]+")


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode_base64(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded base64 (standard alphabet unless ``urlsafe``)."""
    enc = binascii.b2a_base64(data, newline=False).rstrip(b"=")
    if urlsafe:
        enc = enc.translate(_TO_URLSAFE)
    return enc.decode("ascii")


_PADDING = ("", "", "==", "=")
_B64_CHARS = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def decode_base64(text: str | bytes) -> bytes:
    """Decode base64 in either alphabet, with or without padding.

    Raises :class:`KeyFormatError` (a ``ValueError``) on malformed input.
    """
    if type(text) is str and len(text) % 4 != 1:
        # Fast path for what Matrix sends (unpadded, standard alphabet): strict mode
        # refuses any other character or bad padding, and the general path decides those.
        try:
            return binascii.a2b_base64(text + _PADDING[len(text) % 4], strict_mode=True)
        except (binascii.Error, ValueError):
            pass
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as e:
            raise KeyFormatError("base64 must be ASCII") from e
    if not _B64_CHARS.fullmatch(text):
        raise KeyFormatError("invalid base64 characters")
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        raise KeyFormatError("invalid base64 length")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as e:
        raise KeyFormatError(f"invalid base64: {e}") from e


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An ed25519 signing key with its version (``key_id`` is ``ed25519:<version>``)."""

    version: str
    _key: nacl.signing.SigningKey = field(repr=False, compare=False)

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.version}"

    @property
    def algorithm(self) -> str:
        return ED25519

    @property
    def verify_key(self) -> VerifyKey:
        return self._key.verify_key

    @property
    def public_key_base64(self) -> str:
        return encode_base64(bytes(self._key.verify_key))

    @property
    def seed_base64(self) -> str:
        return encode_base64(bytes(self._key))

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte signature of ``message``."""
        return self._key.sign(message).signature


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _KEY_VERSION.fullmatch(version):
        raise KeyFormatError(f"invalid key version {version!r}")
    return version


def generate_signing_key(version: str) -> SigningKey:
    """A new random ed25519 key (the only randomness in :mod:`ruma.protocol`)."""
    return SigningKey(_check_version(version), nacl.signing.SigningKey.generate())


def signing_key_from_seed(version: str, seed: bytes) -> SigningKey:
    if len(seed) != 32:
        raise KeyFormatError("an ed25519 seed is 32 bytes")
    return SigningKey(_check_version(version), nacl.signing.SigningKey(seed))


def decode_signing_key(algorithm: str, version: str, seed_base64: str) -> SigningKey:
    if algorithm != ED25519:
        raise KeyFormatError(f"unsupported key algorithm {algorithm!r}")
    return signing_key_from_seed(version, decode_base64(seed_base64))


def read_signing_keys(text: str) -> list[SigningKey]:
    """Parse ``ed25519 <version> <base64 seed>`` lines (Synapse's signing.key format)."""
    keys = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise KeyFormatError(f"line {lineno}: expected '<algorithm> <version> <seed>'")
        keys.append(decode_signing_key(*parts))
    return keys


def write_signing_keys(keys: Iterable[SigningKey]) -> str:
    return "".join(f"{k.algorithm} {k.version} {k.seed_base64}\n" for k in keys)


def decode_verify_key(key_id: str, key_base64: str) -> VerifyKey:
    """Decode a published public key, e.g. from ``/_matrix/key/v2/server``."""
    algorithm, _, version = key_id.partition(":")
    # Lenient on the version: other servers' key IDs need not follow our own grammar.
    if algorithm != ED25519 or not version:
        raise KeyFormatError(f"unsupported key id {key_id!r}")
    raw = decode_base64(key_base64)
    if len(raw) != 32:
        raise KeyFormatError("an ed25519 public key is 32 bytes")
    return VerifyKey(raw)


def encode_verify_key(key: VerifyKey) -> str:
    return encode_base64(bytes(key))


def _signable_bytes(obj: Mapping[str, Any], strict: bool) -> bytes:
    # Signatures and unsigned are never covered by a signature.
    stripped = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return encode_canonical_json(stripped, strict=strict)


def sign_json(
    obj: Mapping[str, Any], server_name: str, key: SigningKey, *, strict: bool = True
) -> dict[str, Any]:
    """Return a new dict: ``obj`` plus our signature under ``signatures[server_name]``."""
    if not isinstance(obj, Mapping):
        raise TypeError("can only sign JSON objects")
    sig = encode_base64(key.sign(_signable_bytes(obj, strict)))
    out: dict[str, Any] = thaw(obj)
    signatures = out.get("signatures")
    if not isinstance(signatures, dict):
        signatures = out["signatures"] = {}
    server_sigs = signatures.get(server_name)
    if not isinstance(server_sigs, dict):
        server_sigs = signatures[server_name] = {}
    server_sigs[key.key_id] = sig
    return out


def verify_signed_json(
    obj: Mapping[str, Any],
    server_name: str,
    verify_key_id: str,
    verify_key: VerifyKey,
    *,
    strict: bool = False,
) -> None:
    """Check ``signatures[server_name][verify_key_id]``; raise :class:`SignatureError`."""
    try:
        sigs = obj["signatures"][server_name]
        sig_b64 = sigs[verify_key_id]
    except (KeyError, TypeError):
        raise SignatureError(f"missing signature for {server_name} {verify_key_id}") from None
    if not isinstance(sig_b64, str):
        raise SignatureError("signature is not a string")
    sig = _decode_signature(sig_b64)
    try:
        message = _signable_bytes(obj, strict)
    except CanonicalJSONError as e:
        raise SignatureError(f"cannot canonicalise signed object: {e}") from e
    _verify_bytes(message, sig, server_name, verify_key_id, verify_key)


def _decode_signature(sig_b64: str) -> bytes:
    try:
        sig = decode_base64(sig_b64)
    except KeyFormatError as e:
        raise SignatureError(f"malformed signature: {e}") from e
    if len(sig) != 64:
        raise SignatureError("an ed25519 signature is 64 bytes")
    return sig


def _verify_bytes(
    message: bytes, sig: bytes, server_name: str, verify_key_id: str, verify_key: VerifyKey
) -> None:
    try:
        verify_key.verify(message, sig)
    except nacl.exceptions.BadSignatureError:
        raise SignatureError(f"bad signature for {server_name} {verify_key_id}") from None


def _verify_signed_bytes(
    message: bytes, sig_b64: str, server_name: str, verify_key_id: str, verify_key: VerifyKey
) -> None:
    """:func:`verify_signed_json` for a caller that already has the signed bytes (the
    canonical JSON of the object without ``signatures`` and ``unsigned``) and the
    signature string; raises the same :class:`SignatureError` in the same cases."""
    _verify_bytes(message, _decode_signature(sig_b64), server_name, verify_key_id, verify_key)
