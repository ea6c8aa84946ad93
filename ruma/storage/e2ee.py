"""End-to-end encryption storage: device keys, one-time and fallback keys, cross-signing keys
and signatures, to-device messages, and device-list changes.

The server keeps what clients publish exactly as they signed it and hands it out again; it
never looks inside encrypted payloads. Every change another client must hear about takes a
stream position in the same transaction:

- ``device_list`` (``user_id`` = the user whose devices or keys changed, ``ref`` = the
  device, if one): device keys uploaded, cross-signing keys or signatures uploaded, a remote
  user's device list updated. Device creation and deletion take the same kind in
  :mod:`ruma.storage.accounts`.
- ``to_device``: a message for a local device (``user_id`` = recipient) or for another
  server (``user_id`` NULL, ``ref`` = destination, the message in
  ``device_federation_outbox``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.storage.database import Database, Txn

DEVICE_LIST_STREAM = "device_list"
TO_DEVICE_STREAM = "to_device"

__all__ = [
    "DEVICE_LIST_STREAM",
    "TO_DEVICE_STREAM",
    "E2EStore",
    "OneTimeKeyConflict",
    "OutboundToDevice",
    "purge_device_txn",
]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" for _ in values)


class OneTimeKeyConflict(Exception):
    """A one-time key ID was uploaded again with different content."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


@dataclass(frozen=True, slots=True)
class OutboundToDevice:
    """To-device messages for one other server, as one ``m.direct_to_device`` EDU."""

    stream_pos: int
    destination: str
    sender: str
    message_type: str
    message_id: str
    messages: Mapping[str, Mapping[str, Any]]


def purge_device_txn(txn: Txn, user_id: str, device_id: str) -> None:
    """Forget everything end-to-end about a device being deleted (inside its transaction)."""
    for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "device_inbox"):
        txn.execute(f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?", (user_id, device_id))
    txn.execute(
        "DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?",
        (user_id, device_id),
    )


def purge_user_devices_txn(txn: Txn, user_id: str) -> None:
    """Forget every key of a user being deactivated: devices' keys and inboxes,
    cross-signing keys, signatures of their keys, and key backups."""
    for table in (
        "e2e_device_keys",
        "e2e_one_time_keys",
        "e2e_fallback_keys",
        "device_inbox",
        "e2e_cross_signing_keys",
        "e2e_room_keys",
        "e2e_room_key_versions",
    ):
        txn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
    txn.execute("DELETE FROM e2e_signatures WHERE target_user_id = ?", (user_id,))


def _merge_signatures(key: dict[str, Any], rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """Add ``(signer_user_id, signer_key_id, signature)`` rows to ``key['signatures']``."""
    rows = list(rows)
    if not rows:
        return key
    sigs = key.get("signatures")
    if not isinstance(sigs, dict):
        sigs = key["signatures"] = {}
    for signer, signer_key, sig in rows:
        by = sigs.get(signer)
        if not isinstance(by, dict):
            by = sigs[signer] = {}
        by[signer_key] = sig
    return key


class E2EStore:
    """SQL for end-to-end encryption. See the module docstring for the stream kinds."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- device keys ---------------------------------------------------------------------

    async def get_device_keys(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        """A device's identity keys as uploaded (without others' signatures)."""

        def txn(t: Txn) -> dict[str, Any] | None:
            row = t.select_one(
                "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
            return None if row is None else dict(json.loads(row[0]))

        return await self.db.run("get_device_keys", txn)

    async def set_device_keys(self, user_id: str, device_id: str, keys: Mapping[str, Any]) -> bool:
        """Store a device's identity keys; True (and a ``device_list`` row) if they changed."""
        encoded = _dumps(keys)

        def txn(t: Txn) -> bool:
            row = t.select_one(
                "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
            if row is not None:
                if row[0] == encoded:
                    return False
                t.execute(
                    "UPDATE e2e_device_keys SET key_json = ? WHERE user_id = ? AND device_id = ?",
                    (encoded, user_id, device_id),
                )
            else:
                t.execute(
                    "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?)",
                    (user_id, device_id, encoded),
                )
            t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id, ref=device_id)
            return True

        return await self.db.run("set_device_keys", txn)

    async def query_device_keys(
        self, wanted: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """``user -> device -> keys`` of existing devices that uploaded keys.

        An empty device collection means all the user's devices. The keys carry the
        signatures uploaded for them by others and ``unsigned.device_display_name``.
        """

        def txn(t: Txn) -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for user_id, devices in wanted.items():
                sql = (
                    "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
                    " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
                    " WHERE k.user_id = ?"
                )
                params: list[Any] = [user_id]
                dl = list(devices)
                if dl:
                    sql += f" AND k.device_id IN ({_in(dl)})"
                    params.extend(dl)
                rows = t.select(sql, params)
                found: dict[str, dict[str, Any]] = {}
                for device_id, key_json, display_name in rows:
                    key = dict(json.loads(key_json))
                    sigs = t.select(
                        "SELECT signer_user_id, signer_key_id, signature FROM e2e_signatures"
                        " WHERE target_user_id = ? AND target_key_id = ?",
                        (user_id, device_id),
                    )
                    key = _merge_signatures(key, sigs)
                    unsigned: dict[str, Any] = {}
                    if display_name is not None:
                        unsigned["device_display_name"] = display_name
                    key["unsigned"] = unsigned
                    found[device_id] = key
                out[user_id] = found
            return out

        return await self.db.run("get_query_device_keys", txn)

    async def device_exists(self, user_id: str, device_id: str) -> bool:
        def txn(t: Txn) -> bool:
            row = t.select_one(
                "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
            )
            return row is not None

        return await self.db.run("get_device_exists", txn)

    async def get_device_ids(self, user_id: str) -> list[str]:
        def txn(t: Txn) -> list[str]:
            rows = t.select(
                "SELECT device_id FROM devices WHERE user_id = ? ORDER BY device_id", (user_id,)
            )
            return [str(r[0]) for r in rows]

        return await self.db.run("get_device_ids", txn)

    # -- one-time keys -------------------------------------------------------------------

    async def add_one_time_keys(
        self, user_id: str, device_id: str, keys: Sequence[tuple[str, str, Any]]
    ) -> None:
        """Store ``(algorithm, key_id, key)`` one-time keys.

        Uploading a key ID again with the same content is a no-op; with different content
        it raises :class:`OneTimeKeyConflict` and nothing is stored.
        """

        def txn(t: Txn) -> None:
            row = t.select_one(
                "SELECT MAX(upload_seq) FROM e2e_one_time_keys WHERE user_id = ?"
                " AND device_id = ?",
                (user_id, device_id),
            )
            seq = (int(row[0]) if row and row[0] is not None else 0) + 1
            new: list[tuple[Any, ...]] = []
            for algorithm, key_id, key in keys:
                encoded = _dumps(key)
                existing = t.select_one(
                    "SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                    " AND algorithm = ? AND key_id = ?",
                    (user_id, device_id, algorithm, key_id),
                )
                if existing is not None:
                    if existing[0] != encoded:
                        raise OneTimeKeyConflict(f"{algorithm}:{key_id}")
                    continue
                new.append((user_id, device_id, algorithm, key_id, encoded, seq))
            if new:
                t.executemany(
                    "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id,"
                    " key_json, upload_seq) VALUES (?, ?, ?, ?, ?, ?)",
                    new,
                )

        await self.db.run("add_one_time_keys", txn)

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        """Unclaimed one-time keys of a device, per algorithm."""

        def txn(t: Txn) -> dict[str, int]:
            rows = t.select(
                "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ?"
                " AND device_id = ? GROUP BY algorithm",
                (user_id, device_id),
            )
            return {str(r[0]): int(r[1]) for r in rows}

        return await self.db.run("get_one_time_key_counts", txn)

    async def claim_keys(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Claim one key per ``(user_id, device_id, algorithm)``.

        The oldest unclaimed one-time key is removed and returned; when there is none, the
        device's fallback key of that algorithm is returned (and marked used). Result:
        ``(user_id, device_id) -> {"<algorithm>:<key_id>": key}``. Every one-time key is
        handed out at most once, even to concurrent claims (the DELETE decides the winner).
        """

        def txn(t: Txn) -> dict[tuple[str, str], dict[str, Any]]:
            out: dict[tuple[str, str], dict[str, Any]] = {}
            for user_id, device_id, algorithm in wanted:
                claimed = self._claim_one_txn(t, user_id, device_id, algorithm)
                if claimed is not None:
                    out.setdefault((user_id, device_id), {})[claimed[0]] = claimed[1]
            return out

        return await self.db.run("claim_keys", txn)

    def _claim_one_txn(
        self, t: Txn, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, Any] | None:
        for _ in range(5):
            row = t.select_one(
                "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ?"
                " AND device_id = ? AND algorithm = ? ORDER BY upload_seq, key_id LIMIT 1",
                (user_id, device_id, algorithm),
            )
            if row is None:
                break
            t.execute(
                "DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                " AND algorithm = ? AND key_id = ?",
                (user_id, device_id, algorithm, row[0]),
            )
            if t.rowcount == 1:
                return f"{algorithm}:{row[0]}", json.loads(row[1])
            # Another transaction claimed it between our SELECT and DELETE: try the next.
        fallback = t.select_one(
            "SELECT key_id, key_json, used FROM e2e_fallback_keys WHERE user_id = ?"
            " AND device_id = ? AND algorithm = ?",
            (user_id, device_id, algorithm),
        )
        if fallback is None:
            return None
        if not fallback[2]:
            t.execute(
                "UPDATE e2e_fallback_keys SET used = ? WHERE user_id = ? AND device_id = ?"
                " AND algorithm = ?",
                (True, user_id, device_id, algorithm),
            )
        return f"{algorithm}:{fallback[0]}", json.loads(fallback[1])

    # -- fallback keys -------------------------------------------------------------------

    async def set_fallback_keys(
        self, user_id: str, device_id: str, keys: Sequence[tuple[str, str, Any]]
    ) -> None:
        """Replace the device's fallback key of each algorithm given.

        Uploading the same key again keeps its ``used`` mark; a new key starts unused.
        """

        def txn(t: Txn) -> None:
            for algorithm, key_id, key in keys:
                encoded = _dumps(key)
                row = t.select_one(
                    "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ?"
                    " AND device_id = ? AND algorithm = ?",
                    (user_id, device_id, algorithm),
                )
                if row is not None and row[0] == key_id and row[1] == encoded:
                    continue
                t.execute(
                    "DELETE FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
                    " AND algorithm = ?",
                    (user_id, device_id, algorithm),
                )
                t.execute(
                    "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id,"
                    " key_json, used) VALUES (?, ?, ?, ?, ?, ?)",
                    (user_id, device_id, algorithm, key_id, encoded, False),
                )

        await self.db.run("set_fallback_keys", txn)

    async def get_unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        def txn(t: Txn) -> list[str]:
            rows = t.select(
                "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
                " AND used = ? ORDER BY algorithm",
                (user_id, device_id, False),
            )
            return [str(r[0]) for r in rows]

        return await self.db.run("get_unused_fallback_key_types", txn)

    # -- cross-signing -------------------------------------------------------------------

    async def get_cross_signing_keys(
        self, user_ids: Collection[str], *, with_signatures: bool = True
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """``user -> key_type -> key`` (master, self_signing, user_signing), with the
        signatures others uploaded for them merged in when ``with_signatures``."""
        ul = list(user_ids)

        def txn(t: Txn) -> dict[str, dict[str, dict[str, Any]]]:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            if not ul:
                return out
            rows = t.select(
                "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys"
                f" WHERE user_id IN ({_in(ul)})",
                ul,
            )
            for user_id, key_type, public_key, key_json in rows:
                key = dict(json.loads(key_json))
                if with_signatures:
                    sigs = t.select(
                        "SELECT signer_user_id, signer_key_id, signature FROM e2e_signatures"
                        " WHERE target_user_id = ? AND target_key_id = ?",
                        (user_id, public_key),
                    )
                    key = _merge_signatures(key, sigs)
                out.setdefault(user_id, {})[key_type] = key
            return out

        return await self.db.run("get_cross_signing_keys", txn)

    async def set_cross_signing_keys(
        self, user_id: str, keys: Mapping[str, tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Store ``key_type -> (public_key, key)``; one ``device_list`` row for the user.

        A new master key makes the signatures of the old keys meaningless; they are dropped.
        """

        def txn(t: Txn) -> None:
            for key_type, (public_key, key) in keys.items():
                old = t.select_one(
                    "SELECT public_key FROM e2e_cross_signing_keys WHERE user_id = ?"
                    " AND key_type = ?",
                    (user_id, key_type),
                )
                if old is not None and old[0] != public_key:
                    t.execute(
                        "DELETE FROM e2e_signatures WHERE target_user_id = ?"
                        " AND target_key_id = ?",
                        (user_id, old[0]),
                    )
                t.execute(
                    "DELETE FROM e2e_cross_signing_keys WHERE user_id = ? AND key_type = ?",
                    (user_id, key_type),
                )
                t.execute(
                    "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key,"
                    " key_json) VALUES (?, ?, ?, ?)",
                    (user_id, key_type, public_key, _dumps(key)),
                )
            t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id)

        await self.db.run("set_cross_signing_keys", txn)

    async def add_signatures(self, signatures: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Store ``(target_user, target_key_id, signer_user, signer_key_id, signature)``;
        one ``device_list`` row per target user."""

        def txn(t: Txn) -> None:
            targets: list[str] = []
            for target_user, target_key, signer, signer_key, sig in signatures:
                t.execute(
                    "DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?"
                    " AND signer_user_id = ? AND signer_key_id = ?",
                    (target_user, target_key, signer, signer_key),
                )
                t.execute(
                    "INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id,"
                    " signer_key_id, signature) VALUES (?, ?, ?, ?, ?)",
                    (target_user, target_key, signer, signer_key, sig),
                )
                if target_user not in targets:
                    targets.append(target_user)
            for target_user in targets:
                t.next_stream_position(DEVICE_LIST_STREAM, user_id=target_user)

        await self.db.run("add_signatures", txn)

    async def get_signatures_by(
        self, signer: str, target_users: Collection[str]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """Signatures ``signer`` uploaded for keys of ``target_users``:
        ``(target_user, target_key_id) -> {signer_key_id: signature}``."""
        tl = list(target_users)

        def txn(t: Txn) -> dict[tuple[str, str], dict[str, str]]:
            out: dict[tuple[str, str], dict[str, str]] = {}
            if not tl:
                return out
            rows = t.select(
                "SELECT target_user_id, target_key_id, signer_key_id, signature"
                f" FROM e2e_signatures WHERE signer_user_id = ? AND target_user_id IN ({_in(tl)})",
                (signer, *tl),
            )
            for target, key_id, signer_key, sig in rows:
                out.setdefault((str(target), str(key_id)), {})[str(signer_key)] = str(sig)
            return out

        return await self.db.run("get_signatures_by", txn)

    # -- to-device -----------------------------------------------------------------------

    async def add_to_device(
        self,
        *,
        sender: str,
        sender_key: str,
        txn_id: str,
        message_type: str,
        local: Mapping[str, Mapping[str, Mapping[str, Any]]],
        remote: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
        now_ms: int,
    ) -> bool:
        """Queue one sendToDevice request; False (nothing queued) if ``txn_id`` was seen.

        ``local``: ``user -> device -> content`` for our users; device ``*`` means every
        device the user has now. ``remote``: ``destination -> user -> device -> content``.
        Local messages are stored as full to-device events (``type``, ``sender``,
        ``content``); each recipient user takes one stream position.
        """

        def txn(t: Txn) -> bool:
            seen = t.select_one(
                "SELECT 1 FROM to_device_txns WHERE user_id = ? AND sender_key = ?"
                " AND txn_id = ?",
                (sender, sender_key, txn_id),
            )
            if seen is not None:
                return False
            t.execute(
                "INSERT INTO to_device_txns (user_id, sender_key, txn_id, ts) VALUES (?, ?, ?, ?)",
                (sender, sender_key, txn_id, now_ms),
            )
            self._deliver_local_txn(t, sender, message_type, local)
            for destination, messages in remote.items():
                pos = t.next_stream_position(TO_DEVICE_STREAM, ref=destination)
                t.execute(
                    "INSERT INTO device_federation_outbox (stream_pos, destination, sender,"
                    " message_type, message_id, messages_json) VALUES (?, ?, ?, ?, ?, ?)",
                    (pos, destination, sender, message_type, str(pos), _dumps(messages)),
                )
            return True

        return await self.db.run("add_to_device", txn)

    def _deliver_local_txn(
        self,
        t: Txn,
        sender: str,
        message_type: str,
        local: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ) -> None:
        for user_id, by_device in local.items():
            existing = {
                str(r[0])
                for r in t.select("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
            }
            targets: dict[str, Mapping[str, Any]] = {}
            for device_id, content in by_device.items():
                if device_id == "*":
                    for d in existing:
                        targets.setdefault(d, content)
                elif device_id in existing:
                    targets[device_id] = content
            if not targets:
                continue
            pos = t.next_stream_position(TO_DEVICE_STREAM, user_id=user_id)
            t.executemany(
                "INSERT INTO device_inbox (user_id, device_id, stream_pos, message_json,"
                " delivered_in) VALUES (?, ?, ?, ?, NULL)",
                [
                    (
                        user_id,
                        device_id,
                        pos,
                        _dumps({"type": message_type, "sender": sender, "content": content}),
                    )
                    for device_id, content in sorted(targets.items())
                ],
            )

    async def add_remote_to_device(
        self,
        *,
        origin: str,
        sender: str,
        message_id: str,
        message_type: str,
        local: Mapping[str, Mapping[str, Mapping[str, Any]]],
        now_ms: int,
    ) -> bool:
        """Deliver an ``m.direct_to_device`` EDU from ``origin`` to our devices, once per
        ``(sender, message_id)``."""

        def txn(t: Txn) -> bool:
            key = f"federation:{origin}"
            if t.select_one(
                "SELECT 1 FROM to_device_txns WHERE user_id = ? AND sender_key = ?"
                " AND txn_id = ?",
                (sender, key, message_id),
            ):
                return False
            t.execute(
                "INSERT INTO to_device_txns (user_id, sender_key, txn_id, ts) VALUES (?, ?, ?, ?)",
                (sender, key, message_id, now_ms),
            )
            self._deliver_local_txn(t, sender, message_type, local)
            return True

        return await self.db.run("add_remote_to_device", txn)

    async def take_to_device_for_sync(
        self, user_id: str, device_id: str, since: int | None, upto: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The device's next to-device events for a sync response whose next_batch is
        ``upto``, and whether more are waiting.

        Syncing from ``since`` acknowledges the messages of every earlier response whose
        next_batch was at most ``since``: those are deleted first. The ones returned are
        marked as carried by ``upto``; if that response is lost the client syncs from an
        older token and gets them again.
        """

        def txn(t: Txn) -> tuple[list[dict[str, Any]], bool]:
            if since is not None:
                t.execute(
                    "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ?"
                    " AND delivered_in IS NOT NULL AND delivered_in <= ?",
                    (user_id, device_id, since),
                )
            rows = t.select(
                "SELECT stream_pos, message_json FROM device_inbox WHERE user_id = ?"
                " AND device_id = ? AND stream_pos <= ? ORDER BY stream_pos LIMIT ?",
                (user_id, device_id, upto, limit + 1),
            )
            more = len(rows) > limit
            rows = rows[:limit]
            if rows:
                t.execute(
                    "UPDATE device_inbox SET delivered_in = ? WHERE user_id = ?"
                    " AND device_id = ? AND stream_pos <= ?",
                    (upto, user_id, device_id, int(rows[-1][0])),
                )
            return [dict(json.loads(r[1])) for r in rows], more

        return await self.db.run("take_to_device_for_sync", txn)

    async def get_outbound_to_device(self, stream_pos: int) -> OutboundToDevice | None:
        def txn(t: Txn) -> OutboundToDevice | None:
            row = t.select_one(
                "SELECT destination, sender, message_type, message_id, messages_json"
                " FROM device_federation_outbox WHERE stream_pos = ?",
                (stream_pos,),
            )
            if row is None:
                return None
            return OutboundToDevice(
                stream_pos, str(row[0]), str(row[1]), str(row[2]), str(row[3]),
                json.loads(row[4]),
            )

        return await self.db.run("get_outbound_to_device", txn)

    async def delete_outbound_to_device(self, stream_pos: int) -> None:
        def txn(t: Txn) -> None:
            t.execute("DELETE FROM device_federation_outbox WHERE stream_pos = ?", (stream_pos,))

        await self.db.run("delete_outbound_to_device", txn)

    async def delete_old_to_device_txns(self, before_ms: int) -> None:
        def txn(t: Txn) -> None:
            t.execute("DELETE FROM to_device_txns WHERE ts < ?", (before_ms,))

        await self.db.run("delete_old_to_device_txns", txn)

    # -- device lists --------------------------------------------------------------------

    async def mark_device_list_changed(self, user_id: str, device_id: str | None = None) -> int:
        """A ``device_list`` row for ``user_id`` (e.g. a remote user's update EDU)."""

        def txn(t: Txn) -> int:
            return t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id, ref=device_id)

        return await self.db.run("mark_device_list_changed", txn)

    async def get_device_list_changes(self, from_pos: int, to_pos: int) -> set[str]:
        """Users whose devices or keys changed at ``from_pos < position <= to_pos``."""

        def txn(t: Txn) -> set[str]:
            rows = t.select(
                "SELECT DISTINCT user_id FROM stream WHERE kind = ? AND position > ?"
                " AND position <= ? AND user_id IS NOT NULL",
                (DEVICE_LIST_STREAM, from_pos, to_pos),
            )
            return {str(r[0]) for r in rows}

        return await self.db.run("get_device_list_changes", txn)

    async def get_device_list_position(self, user_id: str) -> int:
        """The newest ``device_list`` position of a user (0 if none): its stream_id."""

        def txn(t: Txn) -> int:
            row = t.select_one(
                "SELECT MAX(position) FROM stream WHERE user_id = ? AND kind = ?",
                (user_id, DEVICE_LIST_STREAM),
            )
            return int(row[0]) if row and row[0] is not None else 0

        return await self.db.run("get_device_list_position", txn)

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        """Rooms where ``user_id`` (local or remote) is joined in the current state."""

        def txn(t: Txn) -> list[str]:
            rows = t.select(
                "SELECT c.room_id, e.json FROM current_state c JOIN events e"
                " ON e.event_id = c.event_id WHERE c.type = ? AND c.state_key = ?",
                ("m.room.member", user_id),
            )
            return sorted(str(r[0]) for r in rows if _membership(r[1]) == "join")

        return await self.db.run("get_joined_rooms", txn)

    async def get_users_sharing_rooms(
        self, user_id: str, candidates: Collection[str]
    ) -> set[str]:
        """Those of ``candidates`` joined to a room the local ``user_id`` is joined to."""
        cl = sorted(set(candidates))

        def txn(t: Txn) -> set[str]:
            out: set[str] = set()
            for i in range(0, len(cl), 200):
                chunk = cl[i : i + 200]
                rows = t.select(
                    "SELECT c.state_key, e.json FROM local_memberships lm"
                    " JOIN current_state c ON c.room_id = lm.room_id"
                    " JOIN events e ON e.event_id = c.event_id"
                    " WHERE lm.user_id = ? AND lm.membership = ? AND c.type = ?"
                    f" AND c.state_key IN ({_in(chunk)})",
                    (user_id, "join", "m.room.member", *chunk),
                )
                out.update(str(r[0]) for r in rows if _membership(r[1]) == "join")
            return out

        return await self.db.run("get_users_sharing_rooms", txn)

    async def get_member_changes(
        self, room_ids: Collection[str], from_pos: int, to_pos: int
    ) -> list[tuple[str, str, str]]:
        """``(room_id, user_id, membership)`` of membership events in ``room_ids`` at
        ``from_pos < position <= to_pos``, oldest first."""
        rl = sorted(room_ids)

        def txn(t: Txn) -> list[tuple[str, str, str]]:
            out: list[tuple[int, str, str, str]] = []
            for i in range(0, len(rl), 200):
                chunk = rl[i : i + 200]
                rows = t.select(
                    "SELECT stream_position, room_id, state_key, json FROM events"
                    f" WHERE room_id IN ({_in(chunk)}) AND type = ? AND stream_position > ?"
                    " AND stream_position <= ? AND state_key IS NOT NULL",
                    (*chunk, "m.room.member", from_pos, to_pos),
                )
                out.extend((int(r[0]), str(r[1]), str(r[2]), _membership(r[3])) for r in rows)
            out.sort()
            return [(r, u, m) for _, r, u, m in out]

        return await self.db.run("get_member_changes", txn)


def _membership(pdu_json: str) -> str:
    try:
        content = json.loads(pdu_json).get("content", {})
        m = content.get("membership") if isinstance(content, dict) else None
    except ValueError:
        return ""
    return m if isinstance(m, str) else ""
