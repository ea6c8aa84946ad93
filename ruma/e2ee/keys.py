"""Publishing and fetching end-to-end keys: ``/keys/upload``, ``/keys/query``,
``/keys/claim``, cross-signing keys and signatures.

The server checks who may publish what (a device only its own keys, signed by itself; a
cross-signing key only when signed by the user's master key; a signature only when it
verifies with the key it claims) and never looks inside encrypted data.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from ruma.e2ee.remote import RemoteKeyQuerier
from ruma.e2ee.validation import (
    CROSS_SIGNING_FIELDS,
    CROSS_SIGNING_USAGES,
    ED25519,
    check_cross_signing_key,
    check_device_keys,
    invalid_signature,
    parse_key_map,
    signature_valid,
    split_key_id,
)
from ruma.errors import Codes, MatrixError, bad_json, forbidden, invalid_param
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import UserID
from ruma.storage.e2ee import E2EStore, OneTimeKeyConflict

__all__ = ["E2EKeys", "default_key_counts"]

DEFAULT_TIMEOUT_MS = 10_000
MAX_QUERY_USERS = 1000
SIGNED_CURVE25519 = "signed_curve25519"


def default_key_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """One-time key counts with ``signed_curve25519`` always present: clients read a
    missing count as "unknown" rather than zero and would not top their keys up."""
    out = dict(counts)
    out.setdefault(SIGNED_CURVE25519, 0)
    return out


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def _check_user_id(user_id: Any) -> str:
    if not isinstance(user_id, str):
        raise bad_json("User IDs must be strings")
    try:
        UserID.parse(user_id)
    except (InvalidIdentifier, ValueError):
        raise invalid_param(f"Invalid user ID {user_id!r}") from None
    return user_id


def _timeout(body: Mapping[str, Any]) -> int:
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise bad_json("'timeout' must be an integer")
    return max(0, min(timeout, 60_000))


def _unsigned_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


class E2EKeys:
    log = Logger()

    def __init__(
        self,
        *,
        store: E2EStore,
        server_name: str,
        remote: RemoteKeyQuerier | None = None,
    ) -> None:
        self.store = store
        self.server_name = server_name
        # Other servers' users: set when federation is wired (ruma.tap).
        self.remote = remote

    def is_local(self, user_id: str) -> bool:
        return _server_of(user_id) == self.server_name

    # -- /keys/upload --------------------------------------------------------------------

    async def upload(self, user_id: str, device_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store the device's identity, one-time and fallback keys; answer the counts."""
        device_keys = body.get("device_keys")
        checked = None
        if device_keys is not None:
            checked = check_device_keys(device_keys, user_id, device_id)
        otks = body.get("one_time_keys")
        parsed_otks = parse_key_map(otks, "one_time_keys") if otks is not None else []
        fallback = body.get("fallback_keys")
        if fallback is None:
            fallback = body.get("org.matrix.msc2732.fallback_keys")
        parsed_fallback = parse_key_map(fallback, "fallback_keys") if fallback is not None else []
        algorithms = [a for a, _, _ in parsed_fallback]
        if len(set(algorithms)) != len(algorithms):
            raise invalid_param("At most one fallback key per algorithm may be uploaded")

        if checked is not None:
            # Stored again only if they changed (then other users' clients hear of it).
            await self.store.set_device_keys(user_id, device_id, checked)
        if parsed_otks:
            try:
                await self.store.add_one_time_keys(user_id, device_id, parsed_otks)
            except OneTimeKeyConflict as e:
                raise invalid_param(
                    f"One-time key {e.key_id} already exists with different content"
                ) from None
        if parsed_fallback:
            await self.store.set_fallback_keys(user_id, device_id, parsed_fallback)
        counts = await self.store.count_one_time_keys(user_id, device_id)
        return {"one_time_key_counts": default_key_counts(counts)}

    # -- /keys/query ---------------------------------------------------------------------

    async def query(self, requester: str, body: Mapping[str, Any]) -> dict[str, Any]:
        wanted = body.get("device_keys")
        if not isinstance(wanted, Mapping):
            raise bad_json("'device_keys' must be an object")
        if len(wanted) > MAX_QUERY_USERS:
            raise MatrixError(400, Codes.LIMIT_EXCEEDED, "Too many users in one query")
        timeout_ms = _timeout(body)
        local: dict[str, list[str]] = {}
        remote: dict[str, dict[str, list[str]]] = {}
        for user_id, devices in wanted.items():
            _check_user_id(user_id)
            if devices is None:
                devices = []
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json(f"'device_keys.{user_id}' must be an array of device IDs")
            if self.is_local(user_id):
                local[user_id] = devices
            else:
                remote.setdefault(_server_of(user_id), {})[user_id] = devices

        result: dict[str, Any] = {
            "device_keys": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
            "failures": {},
        }
        if local:
            found = await self.query_local(local, requester=requester)
            for field in ("device_keys", "master_keys", "self_signing_keys", "user_signing_keys"):
                result[field].update(found.get(field, {}))
        await _concurrently(
            self._query_remote(requester, server, users, timeout_ms, result)
            for server, users in sorted(remote.items())
        )
        return result

    async def query_local(
        self, wanted: Mapping[str, list[str]], *, requester: str | None
    ) -> dict[str, Any]:
        """Our users' device keys and cross-signing keys. ``requester`` None: another
        server asks (no user-signing keys; signatures by the owner only)."""
        devices = await self.store.query_device_keys(wanted)
        cross = await self.store.get_cross_signing_keys(list(wanted))
        master: dict[str, Any] = {}
        self_signing: dict[str, Any] = {}
        user_signing: dict[str, Any] = {}
        for user_id, keys in cross.items():
            visible = {user_id} | ({requester} if requester else set())
            if "master" in keys:
                master[user_id] = _only_signers(keys["master"], visible)
            if "self_signing" in keys:
                self_signing[user_id] = keys["self_signing"]
            if "user_signing" in keys and user_id == requester:
                user_signing[user_id] = keys["user_signing"]
        out: dict[str, Any] = {
            "device_keys": devices,
            "master_keys": master,
            "self_signing_keys": self_signing,
        }
        if requester is not None:
            out["user_signing_keys"] = user_signing
        return out

    async def _query_remote(
        self,
        requester: str,
        server: str,
        users: dict[str, list[str]],
        timeout_ms: int,
        result: dict[str, Any],
    ) -> None:
        if self.remote is None:
            result["failures"][server] = {"status": 503, "message": "Federation is not available"}
            return
        try:
            answer = await self.remote.query_keys(server, users, timeout_ms)
        except Exception as e:
            self.log.info("keys/query to {server} failed: {e}", server=server, e=e)
            result["failures"][server] = {"status": 503, "message": "Could not reach the server"}
            return
        device_keys = answer.get("device_keys")
        if isinstance(device_keys, Mapping):
            for user_id, devices in device_keys.items():
                if user_id in users and isinstance(devices, Mapping):
                    result["device_keys"][user_id] = {
                        d: k
                        for d, k in devices.items()
                        if isinstance(k, Mapping)
                        and k.get("user_id") == user_id
                        and k.get("device_id") == d
                    }
        for field in ("master_keys", "self_signing_keys"):
            keys = answer.get(field)
            if not isinstance(keys, Mapping):
                continue
            for user_id, key in keys.items():
                if user_id in users and isinstance(key, Mapping) and key.get("user_id") == user_id:
                    result[field][user_id] = dict(key)
        # Our user's own signatures of these masters (their user-signing key verified them).
        masters = result["master_keys"]
        remote_masters = [u for u in users if u in masters]
        if remote_masters:
            mine = await self.store.get_signatures_by(requester, remote_masters)
            for (target, key_id), sigs in mine.items():
                key = masters.get(target)
                if key is None or f"{ED25519}:{key_id}" not in (key.get("keys") or {}):
                    continue
                merged = dict(key.get("signatures") or {})
                by = dict(merged.get(requester) or {})
                by.update(sigs)
                merged[requester] = by
                masters[target] = {**key, "signatures": merged}

    # -- /keys/claim ---------------------------------------------------------------------

    async def claim(self, body: Mapping[str, Any]) -> dict[str, Any]:
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, Mapping):
            raise bad_json("'one_time_keys' must be an object")
        timeout_ms = _timeout(body)
        local: list[tuple[str, str, str]] = []
        remote: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            _check_user_id(user_id)
            if not isinstance(devices, Mapping) or not all(
                isinstance(d, str) and isinstance(a, str) for d, a in devices.items()
            ):
                raise bad_json(f"'one_time_keys.{user_id}' must map device IDs to algorithms")
            for device_id, algorithm in devices.items():
                if self.is_local(user_id):
                    local.append((user_id, device_id, algorithm))
                else:
                    remote.setdefault(_server_of(user_id), {}).setdefault(user_id, {})[
                        device_id
                    ] = algorithm
        result: dict[str, Any] = {"one_time_keys": {}, "failures": {}}
        if local:
            result["one_time_keys"].update(await self.claim_local(local))
        await _concurrently(
            self._claim_remote(server, users, timeout_ms, result)
            for server, users in sorted(remote.items())
        )
        return result

    async def _claim_remote(
        self,
        server: str,
        users: dict[str, dict[str, str]],
        timeout_ms: int,
        result: dict[str, Any],
    ) -> None:
        if self.remote is None:
            result["failures"][server] = {"status": 503, "message": "Federation is not available"}
            return
        try:
            answer = await self.remote.claim_keys(server, users, timeout_ms)
        except Exception as e:
            self.log.info("keys/claim to {server} failed: {e}", server=server, e=e)
            result["failures"][server] = {"status": 503, "message": "Could not reach the server"}
            return
        otks = answer.get("one_time_keys")
        if isinstance(otks, Mapping):
            for user_id, devices in otks.items():
                if user_id in users and isinstance(devices, Mapping):
                    result["one_time_keys"][user_id] = dict(devices)

    async def claim_local(
        self, wanted: list[tuple[str, str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Claim keys of our users' devices: ``user -> device -> {key_id: key}``."""
        claimed = await self.store.claim_keys(wanted)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (user_id, device_id), keys in claimed.items():
            out.setdefault(user_id, {})[device_id] = keys
        return out

    # -- cross-signing -------------------------------------------------------------------

    async def signing_upload_needs_auth(self, user_id: str, body: Mapping[str, Any]) -> bool:
        """Whether ``/keys/device_signing/upload`` needs user-interactive auth: only when
        the user has a master key already and the request carries a key that differs from
        the stored one (a first upload, or repeating the same keys, needs none)."""
        stored = (await self.store.get_cross_signing_keys([user_id], with_signatures=False)).get(
            user_id, {}
        )
        if "master" not in stored:
            return False
        for usage in CROSS_SIGNING_USAGES:
            given = body.get(CROSS_SIGNING_FIELDS[usage])
            if given is None:
                continue
            if not isinstance(given, Mapping) or usage not in stored:
                return True
            if {k: v for k, v in given.items() if k != "unsigned"} != stored[usage]:
                return True
        return False

    async def upload_signing_keys(self, user_id: str, body: Mapping[str, Any]) -> None:
        given: dict[str, tuple[str, dict[str, Any]]] = {}
        for usage in CROSS_SIGNING_USAGES:
            key = body.get(CROSS_SIGNING_FIELDS[usage])
            if key is not None:
                given[usage] = check_cross_signing_key(key, user_id, usage)
        if not given:
            return
        if "master" in given:
            master_public = given["master"][0]
        else:
            stored = await self.store.get_cross_signing_keys([user_id], with_signatures=False)
            master = stored.get(user_id, {}).get("master")
            if master is None:
                raise MatrixError(400, Codes.MISSING_PARAM, "No master signing key available")
            master_public = _public_key(master)
        master_id = f"{ED25519}:{master_public}"
        for usage in ("self_signing", "user_signing"):
            if usage in given and not signature_valid(
                given[usage][1], user_id, master_id, master_public
            ):
                raise invalid_signature(
                    f"The {usage.replace('_', '-')} key is not signed by the master key"
                )
        devices = set(await self.store.get_device_ids(user_id))
        for public, _ in given.values():
            if public in devices:
                raise forbidden("Key ID in use: a cross-signing key may not be a device ID")
        await self.store.set_cross_signing_keys(user_id, given)

    async def upload_signatures(self, user_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check and store signatures; answer ``failures`` for the ones refused."""
        failures: dict[str, dict[str, Any]] = {}
        accepted: list[tuple[str, str, str, str, str]] = []
        own = (await self.store.get_cross_signing_keys([user_id], with_signatures=False)).get(
            user_id, {}
        )
        for target_user, keys in body.items():
            if not isinstance(target_user, str) or not isinstance(keys, Mapping):
                raise bad_json("The body must map user IDs to objects of signed keys")
            for key_id, signed in keys.items():
                if not isinstance(signed, Mapping):
                    raise bad_json(f"{target_user}/{key_id}: the signed key must be an object")
                try:
                    if target_user == user_id:
                        accepted.extend(await self._own_signature(user_id, key_id, signed, own))
                    else:
                        accepted.extend(
                            await self._cross_user_signature(user_id, target_user, key_id,
                                                             signed, own)
                        )
                except MatrixError as e:
                    failures.setdefault(target_user, {})[key_id] = e.to_json()
        if accepted:
            await self.store.add_signatures(accepted)
        return {"failures": failures}

    async def _own_signature(
        self, user_id: str, key_id: str, signed: Mapping[str, Any], own: Mapping[str, Any]
    ) -> list[tuple[str, str, str, str, str]]:
        master = own.get("master")
        if master is not None and _public_key(master) == key_id:
            # The master key, signed by one of the user's devices.
            if _unsigned_copy(signed) != _unsigned_copy(master):
                raise invalid_signature("The signed object does not match the master key")
            out = []
            by_user = (signed.get("signatures") or {}).get(user_id) or {}
            for sig_key_id, sig in by_user.items():
                algorithm, device_id = split_key_id(sig_key_id)
                if algorithm != ED25519 or device_id == key_id:
                    continue
                device = await self.store.get_device_keys(user_id, device_id)
                public = (device or {}).get("keys", {}).get(sig_key_id)
                if not isinstance(public, str) or not signature_valid(
                    signed, user_id, sig_key_id, public
                ):
                    raise invalid_signature()
                out.append((user_id, key_id, user_id, sig_key_id, str(sig)))
            if not out:
                raise invalid_signature("No device signature of the master key")
            return out
        # One of the user's devices, signed by their self-signing key.
        device = await self.store.get_device_keys(user_id, key_id)
        if device is None:
            raise MatrixError(404, Codes.NOT_FOUND, "Unknown device or key")
        ssk = own.get("self_signing")
        if ssk is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "No self-signing key uploaded")
        return [self._verified(user_id, key_id, signed, device, user_id, ssk)]

    async def _cross_user_signature(
        self,
        user_id: str,
        target_user: str,
        key_id: str,
        signed: Mapping[str, Any],
        own: Mapping[str, Any],
    ) -> list[tuple[str, str, str, str, str]]:
        """Another user's master key, signed by the requester's user-signing key."""
        usk = own.get("user_signing")
        if usk is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "No user-signing key uploaded")
        if self.is_local(target_user):
            theirs = (await self.store.get_cross_signing_keys([target_user],
                                                             with_signatures=False))
            master = theirs.get(target_user, {}).get("master")
            if master is None or _public_key(master) != key_id:
                raise MatrixError(404, Codes.NOT_FOUND, "Unknown master key")
        else:
            # A remote user's master key: we hold no copy; it must at least be that key.
            master = dict(signed)
            if signed.get("user_id") != target_user or (signed.get("keys") or {}).get(
                f"{ED25519}:{key_id}"
            ) != key_id or "master" not in (signed.get("usage") or []):
                raise invalid_signature("The signed object is not that user's master key")
        return [self._verified(target_user, key_id, signed, master, user_id, usk)]

    def _verified(
        self,
        target_user: str,
        target_key_id: str,
        signed: Mapping[str, Any],
        stored: Mapping[str, Any],
        signer: str,
        signing_key: Mapping[str, Any],
    ) -> tuple[str, str, str, str, str]:
        if _unsigned_copy(signed) != _unsigned_copy(stored):
            raise invalid_signature("The signed object does not match the stored key")
        public = _public_key(signing_key)
        sig_key_id = f"{ED25519}:{public}"
        sig = ((signed.get("signatures") or {}).get(signer) or {}).get(sig_key_id)
        if not isinstance(sig, str) or not signature_valid(signed, signer, sig_key_id, public):
            raise invalid_signature()
        return (target_user, target_key_id, signer, sig_key_id, sig)


async def _concurrently(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines side by side (each handles its own errors)."""
    ds = [Deferred.fromCoroutine(c) for c in coros]
    if ds:
        await gatherResults(ds, consumeErrors=True)


def _public_key(key: Mapping[str, Any]) -> str:
    ((_, public),) = dict(key["keys"]).items()
    return str(public)


def _only_signers(key: Mapping[str, Any], signers: set[str]) -> dict[str, Any]:
    out = dict(key)
    sigs = key.get("signatures")
    if isinstance(sigs, Mapping):
        out["signatures"] = {u: s for u, s in sigs.items() if u in signers}
    return out
