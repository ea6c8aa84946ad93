"""Test clients' keys: ed25519 keys that sign device keys, one-time keys and cross-signing
keys the way a real client does (canonical JSON without ``signatures``/``unsigned``)."""

from __future__ import annotations

import copy
from typing import Any

import nacl.signing

from ruma.protocol.json import encode_canonical_json
from ruma.protocol.signing import encode_base64
from tests.harness import TestHomeserver


class Ed25519:
    """A client-side ed25519 key pair."""

    def __init__(self) -> None:
        self._sk = nacl.signing.SigningKey.generate()
        self.public = encode_base64(bytes(self._sk.verify_key))

    def sign(self, obj: dict[str, Any], user_id: str, key_id: str) -> dict[str, Any]:
        """A copy of ``obj`` with this key's signature under ``signatures[user_id][key_id]``."""
        out = copy.deepcopy(obj)
        signable = {k: v for k, v in out.items() if k not in ("signatures", "unsigned")}
        sig = encode_base64(self._sk.sign(encode_canonical_json(signable)).signature)
        out.setdefault("signatures", {}).setdefault(user_id, {})[key_id] = sig
        return out


def device_keys(user_id: str, device_id: str, key: Ed25519, curve: str = "Y3VydmU") -> dict[str, Any]:
    """Self-signed identity keys of a device."""
    obj = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": curve, f"ed25519:{device_id}": key.public},
    }
    return key.sign(obj, user_id, f"ed25519:{device_id}")


def one_time_keys(
    user_id: str, device_id: str, key: Ed25519, ids: list[str], *, fallback: bool = False
) -> dict[str, Any]:
    out = {}
    for kid in ids:
        obj: dict[str, Any] = {"key": f"otk{kid}"}
        if fallback:
            obj["fallback"] = True
        out[f"signed_curve25519:{kid}"] = key.sign(obj, user_id, f"ed25519:{device_id}")
    return out


def cross_signing_key(
    user_id: str, usage: str, key: Ed25519, signer: Ed25519 | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "user_id": user_id,
        "usage": [usage],
        "keys": {f"ed25519:{key.public}": key.public},
    }
    if signer is not None:
        obj = signer.sign(obj, user_id, f"ed25519:{signer.public}")
    return obj


class E2EUser:
    """A logged-in user with one device and its device key, driving the test homeserver."""

    def __init__(self, hs: TestHomeserver, localpart: str, device_id: str = "DEV1") -> None:
        self.hs = hs
        self.user_id = hs.run(hs.hs.accounts.register(localpart, "pw"))
        self.localpart = localpart
        self.device_id = device_id
        self.token = hs.run(hs.hs.accounts.login(self.user_id, device_id)).access_token
        self.key = Ed25519()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.hs.request(method, path, body, token=self.token)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        code, resp = self.request(method, path, body)
        if code != 200:
            raise AssertionError(f"{method} {path}: {code} {resp}")
        return resp

    def upload_device_keys(self) -> Any:
        return self.ok(
            "POST", "/keys/upload", {"device_keys": device_keys(self.user_id, self.device_id, self.key)}
        )

    def sync(self, since: str | None = None, timeout: int = 0) -> Any:
        path = f"/sync?timeout={timeout}"
        if since is not None:
            path += f"&since={since}"
        return self.ok("GET", path)

    def create_room(self, **extra: Any) -> str:
        return str(self.ok("POST", "/createRoom", extra)["room_id"])

    def join(self, room_id: str) -> None:
        self.ok("POST", f"/join/{room_id}", {})

    def leave(self, room_id: str) -> None:
        self.ok("POST", f"/rooms/{room_id}/leave", {})
