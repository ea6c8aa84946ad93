"""Other servers' signing keys: fetched directly or through notaries, checked, cached.

A key response is only believed when the server signed it with one of the keys it lists,
and (through a notary) when the notary signed it too with a key the operator configured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.protocol.errors import KeyFormatError, SignatureError
from ruma.protocol.signing import (
    SigningKey,
    VerifyKey,
    decode_verify_key,
    sign_json,
    verify_signed_json,
)
from ruma.storage.server_keys import ServerKeyStore, StoredKey

# Spec: a key response's valid_until_ts is trusted for at most 7 days ahead.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
# How long our own key response says it is valid for.
OWN_KEY_VALIDITY_MS = 24 * 3600 * 1000


class KeyLookupError(Exception):
    """No usable key could be found for a server."""


class JSONClient(Protocol):
    async def get_json(self, destination: str, path: str, **kw: Any) -> Any: ...

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class TrustedKeyServer:
    server_name: str
    verify_keys: Mapping[str, str]  # key id -> unpadded base64; empty = trust what it serves


class Keyring:
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: ServerKeyStore,
        client: JSONClient,
        *,
        server_name: str,
        signing_keys: Sequence[SigningKey],
        old_keys: Mapping[str, tuple[VerifyKey, int]] | None = None,
        trusted_key_servers: Sequence[TrustedKeyServer] = (),
    ) -> None:
        self._clock = clock
        self._store = store
        self._client = client
        self.server_name = server_name
        self._signing_keys = list(signing_keys)
        self._old_keys = dict(old_keys or {})
        self._trusted = list(trusted_key_servers)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # --- our own keys -------------------------------------------------------------------

    def own_key_response(self) -> dict[str, Any]:
        """``GET /_matrix/key/v2/server``: our keys, signed by each of them."""
        body: dict[str, Any] = {
            "server_name": self.server_name,
            "valid_until_ts": self._now_ms() + OWN_KEY_VALIDITY_MS,
            "verify_keys": {k.key_id: {"key": k.public_key_base64} for k in self._signing_keys},
            "old_verify_keys": {
                key_id: {"key": _b64(vk), "expired_ts": expired}
                for key_id, (vk, expired) in self._old_keys.items()
            },
        }
        for key in self._signing_keys:
            body = sign_json(body, self.server_name, key)
        return body

    # --- other servers' keys ------------------------------------------------------------

    async def get_verify_key(
        self, server_name: str, key_id: str, *, valid_at_ts: int | None = None
    ) -> VerifyKey:
        """A key of ``server_name`` that is usable at ``valid_at_ts`` (None: any time)."""
        if server_name == self.server_name:
            for k in self._signing_keys:
                if k.key_id == key_id:
                    return k.verify_key
            if key_id in self._old_keys:
                vk, expired = self._old_keys[key_id]
                if valid_at_ts is None or valid_at_ts <= expired:
                    return vk
            raise KeyLookupError(f"we have no key {key_id}")
        stored = (await self._store.get_keys(server_name)).get(key_id)
        if stored is not None and _usable(stored, valid_at_ts):
            return decode_verify_key(key_id, stored.verify_key)
        await self._fetch(server_name, key_id, valid_at_ts)
        stored = (await self._store.get_keys(server_name)).get(key_id)
        if stored is not None and _usable(stored, valid_at_ts):
            return decode_verify_key(key_id, stored.verify_key)
        raise KeyLookupError(f"no usable key {key_id} for {server_name}")

    async def verify_json_for_server(
        self, obj: Mapping[str, Any], server_name: str, *, valid_at_ts: int | None = None
    ) -> None:
        """Check that ``server_name`` signed ``obj`` with a key valid at ``valid_at_ts``."""
        sigs = obj.get("signatures", {}).get(server_name) if isinstance(obj, Mapping) else None
        if not isinstance(sigs, Mapping) or not sigs:
            raise SignatureError(f"not signed by {server_name}")
        errors = []
        for key_id in sigs:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            try:
                vk = await self.get_verify_key(server_name, key_id, valid_at_ts=valid_at_ts)
                verify_signed_json(obj, server_name, key_id, vk)
                return
            except (KeyLookupError, SignatureError, KeyFormatError) as e:
                errors.append(str(e))
        raise SignatureError(f"no valid signature of {server_name}: {'; '.join(errors)}")

    async def _fetch(self, server_name: str, key_id: str, valid_at_ts: int | None) -> None:
        try:
            response = await self._client.get_json(
                server_name, "/_matrix/key/v2/server", sign=False
            )
            await self._accept_response(server_name, response, via=None)
            stored = (await self._store.get_keys(server_name)).get(key_id)
            if stored is not None and _usable(stored, valid_at_ts):
                return
        except Exception as e:
            self.log.info("direct key fetch from {server} failed: {e}", server=server_name, e=e)
        for notary in self._trusted:
            try:
                await self._fetch_via_notary(notary, server_name, key_id, valid_at_ts)
                return
            except Exception as e:
                self.log.info("key fetch for {server} via {notary} failed: {e}",
                              server=server_name, notary=notary.server_name, e=e)

    async def _fetch_via_notary(self, notary: TrustedKeyServer, server_name: str,
                                key_id: str, valid_at_ts: int | None) -> None:
        body = {"server_keys": {server_name: {key_id: {
            "minimum_valid_until_ts": valid_at_ts or self._now_ms()}}}}
        answer = await self._client.post_json(notary.server_name, "/_matrix/key/v2/query", body)
        responses = answer.get("server_keys") if isinstance(answer, dict) else None
        if not isinstance(responses, list):
            raise KeyLookupError("notary answer has no server_keys list")
        for response in responses:
            if not isinstance(response, dict) or response.get("server_name") != server_name:
                continue
            for nkey_id, nkey in notary.verify_keys.items():
                verify_signed_json(response, notary.server_name, nkey_id,
                                   decode_verify_key(nkey_id, nkey))
                break
            else:
                if notary.verify_keys:
                    raise KeyLookupError("notary has no configured keys")
            await self._accept_response(server_name, response, via=notary.server_name)

    async def _accept_response(self, server_name: str, response: Any, via: str | None) -> None:
        """Check a key response's shape and self-signature, then store its keys."""
        if not isinstance(response, dict) or response.get("server_name") != server_name:
            raise KeyLookupError("key response is for another server")
        verify_keys = response.get("verify_keys")
        valid_until = response.get("valid_until_ts")
        if not isinstance(verify_keys, dict) or not isinstance(valid_until, int):
            raise KeyLookupError("key response lacks verify_keys or valid_until_ts")
        decoded: dict[str, tuple[VerifyKey, str]] = {}
        for key_id, entry in verify_keys.items():
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                try:
                    decoded[key_id] = (decode_verify_key(key_id, entry["key"]), entry["key"])
                except (KeyFormatError, ValueError):
                    continue
        signed = False
        for key_id in response.get("signatures", {}).get(server_name, {}) or {}:
            if key_id in decoded:
                verify_signed_json(response, server_name, key_id, decoded[key_id][0])
                signed = True
        if not signed:
            raise KeyLookupError(f"key response not signed by {server_name} itself")
        now = self._now_ms()
        valid_until = min(valid_until, now + MAX_KEY_VALIDITY_MS)
        raw = json.dumps(response, sort_keys=True)
        keys = [StoredKey(server_name, kid, b64, valid_until, None, now, raw)
                for kid, (_, b64) in decoded.items()]
        old = response.get("old_verify_keys")
        if isinstance(old, dict):
            for kid, entry in old.items():
                if (isinstance(entry, dict) and isinstance(entry.get("key"), str)
                        and isinstance(entry.get("expired_ts"), int) and kid not in decoded):
                    keys.append(StoredKey(server_name, kid, entry["key"], entry["expired_ts"],
                                          entry["expired_ts"], now, raw))
        await self._store.store_keys(keys)

    # --- notary -------------------------------------------------------------------------

    async def notary_query(
        self, wanted: Mapping[str, Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """``/_matrix/key/v2/query``: each server's key response, countersigned by us."""
        out: list[dict[str, Any]] = []
        for server_name, key_ids in wanted.items():
            if server_name == self.server_name:
                out.append(self.own_key_response())
                continue
            min_valid = max((int(c.get("minimum_valid_until_ts", 0) or 0)
                             for c in key_ids.values() if isinstance(c, Mapping)), default=0)
            stored = await self._store.get_keys(server_name)
            if not stored or all(s.valid_until_ts < min_valid for s in stored.values()) \
                    or any(k not in stored for k in key_ids):
                try:
                    response = await self._client.get_json(
                        server_name, "/_matrix/key/v2/server", sign=False
                    )
                    await self._accept_response(server_name, response, via=None)
                    stored = await self._store.get_keys(server_name)
                except Exception as e:
                    self.log.info("notary fetch for {server} failed: {e}",
                                  server=server_name, e=e)
            for raw in {s.key_json for s in stored.values()}:
                response = json.loads(raw)
                for key in self._signing_keys:
                    response = sign_json(response, self.server_name, key)
                out.append(response)
        return out


def _usable(key: StoredKey, valid_at_ts: int | None) -> bool:
    if valid_at_ts is None:
        return True
    return valid_at_ts <= key.valid_until_ts


def _b64(vk: VerifyKey) -> str:
    from ruma.protocol.signing import encode_verify_key

    return encode_verify_key(vk)
