"""Push rules, computed notifications (``event_push_actions``) and pushers.

Notifications are written by the room writer just before the event's own transaction, as
one pending row per event (``event_push_pending``) that a database trigger (schema 0054)
turns into ``event_push_actions`` rows with the event's stream position inside that
transaction: an event and its notifications become visible together. The pending row of an
event that was never committed is deleted by the next write of notifications in its room.

Unread counts are computed at read time: the notifications after the user's read receipt
(``m.read`` or ``m.read.private``) in each thread. An unthreaded receipt covers every thread
of the room; a threaded one (``main`` or a thread root) only its thread.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.push.rules import RuleSetting, UserRule
from ruma.storage.database import Database, Txn

_READ_TYPES = ("m.read", "m.read.private")
_UNTHREADED = ""
RULES_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class PushAction:
    """One notification of a user: ``event_id`` matched a rule with ``notify``."""

    user_id: str
    room_id: str
    event_id: str
    stream_pos: int
    thread_id: str
    highlight: bool
    actions: list[Any]
    ts: int


@dataclass(frozen=True, slots=True)
class NewNotification:
    """One user's notification of an event being persisted (see :meth:`PushStore.add_pending`).

    ``actions`` is the matching rule's actions, already JSON-encoded (once per rule).
    """

    user_id: str
    highlight: bool
    actions: str


@dataclass(frozen=True, slots=True)
class Counts:
    notifications: int = 0
    highlights: int = 0


@dataclass(frozen=True, slots=True)
class Pusher:
    user_id: str
    app_id: str
    pushkey: str
    kind: str
    access_token_id: int | None
    device_id: str | None
    pushkey_ts: int
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    last_stream_pos: int
    failing_since: int | None


class PlacementError(Exception):
    """``before``/``after`` names no rule of the user's (of that kind)."""


_PUSHER_COLS = (
    "p.user_id, p.app_id, p.pushkey, p.kind, p.access_token_id, p.device_id, p.pushkey_ts,"
    " p.app_display_name, p.device_display_name, p.profile_tag, p.lang, p.data,"
    " p.last_stream_pos, p.failing_since"
)


def _pusher(r: tuple[Any, ...]) -> Pusher:
    return Pusher(
        user_id=r[0],
        app_id=r[1],
        pushkey=r[2],
        kind=r[3],
        access_token_id=None if r[4] is None else int(r[4]),
        device_id=r[5],
        pushkey_ts=int(r[6]),
        app_display_name=r[7],
        device_display_name=r[8],
        profile_tag=r[9],
        lang=r[10],
        data=json.loads(r[11]),
        last_stream_pos=int(r[12]),
        failing_since=None if r[13] is None else int(r[13]),
    )


def _action(r: tuple[Any, ...]) -> PushAction:
    return PushAction(
        user_id=r[0],
        room_id=r[1],
        event_id=r[2],
        stream_pos=int(r[3]),
        thread_id=r[4],
        highlight=bool(r[5]),
        actions=json.loads(r[6]),
        ts=int(r[7]),
    )


_ACTION_COLS = "user_id, room_id, event_id, stream_pos, thread_id, highlight, actions, ts"

# Pushers whose access token is gone (logged out, device deleted) are dead.
_LIVE = "(p.access_token_id IS NULL OR EXISTS (SELECT 1 FROM access_tokens a WHERE a.id = p.access_token_id))"


class PushStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        # user_id -> (rules, settings): the rules rarely change and every event reads them.
        self._rules_cache: dict[str, tuple[tuple[UserRule, ...], tuple[RuleSetting, ...]]] = {}
        self._rules_generation = 0
        # Users that have (or may have) pushers: a superset, loaded once, grown by add_pusher.
        # Most users have none, so the pusher pool's look-up after each notification is free.
        self._pusher_users: set[str] | None = None
        self._pusher_users_added: set[str] = set()

    # -- rules -------------------------------------------------------------------------

    async def get_rules(self, user_id: str) -> tuple[list[UserRule], list[RuleSetting]]:
        return (await self.get_rules_for_users([user_id]))[user_id]

    @property
    def rules_generation(self) -> int:
        """Grows with every change to anyone's rules (callers caching derived data compare it)."""
        return self._rules_generation

    async def get_rules_for_users(
        self, user_ids: Iterable[str]
    ) -> dict[str, tuple[list[UserRule], list[RuleSetting]]]:
        """Each user's own rules and default-rule settings, from the cache or in ONE read.

        The cache is dropped per user by every rule write below (after it commits); a read
        that overlapped a write does not fill it.
        """
        found = await self.get_frozen_rules_for_users(user_ids)
        return {u: (list(rules), list(settings)) for u, (rules, settings) in found.items()}

    async def get_frozen_rules_for_users(
        self, user_ids: Iterable[str]
    ) -> dict[str, tuple[tuple[UserRule, ...], tuple[RuleSetting, ...]]]:
        """:meth:`get_rules_for_users` as the cached tuples themselves (do not mutate their
        rules): the same objects until the user's rules change, so callers may key on them."""
        wanted = list(dict.fromkeys(user_ids))
        out: dict[str, tuple[tuple[UserRule, ...], tuple[RuleSetting, ...]]] = {}
        missing: list[str] = []
        for u in wanted:
            cached = self._rules_cache.get(u)
            if cached is not None:
                out[u] = cached
            else:
                missing.append(u)
        if not missing:
            return out
        generation = self._rules_generation

        def txn_fn(txn: Txn) -> dict[str, tuple[list[UserRule], list[RuleSetting]]]:
            found: dict[str, tuple[list[UserRule], list[RuleSetting]]] = {
                u: ([], []) for u in missing
            }
            for i in range(0, len(missing), 500):
                chunk = missing[i : i + 500]
                marks = ",".join("?" for _ in chunk)
                for r in txn.select(
                    "SELECT user_id, kind, rule_id, priority, conditions, pattern, actions"
                    f" FROM push_rules WHERE user_id IN ({marks})",
                    chunk,
                ):
                    found[r[0]][0].append(
                        UserRule(
                            kind=r[1],
                            rule_id=r[2],
                            priority=int(r[3]),
                            conditions=None if r[4] is None else json.loads(r[4]),
                            pattern=r[5],
                            actions=json.loads(r[6]),
                        )
                    )
                for r in txn.select(
                    "SELECT user_id, kind, rule_id, enabled, actions FROM push_rule_settings"
                    f" WHERE user_id IN ({marks})",
                    chunk,
                ):
                    found[r[0]][1].append(
                        RuleSetting(
                            kind=r[1],
                            rule_id=r[2],
                            enabled=None if r[3] is None else bool(r[3]),
                            actions=None if r[4] is None else json.loads(r[4]),
                        )
                    )
            return found

        loaded = await self._db.run("get_push_rules", txn_fn)
        frozen = {u: (tuple(rules), tuple(settings)) for u, (rules, settings) in loaded.items()}
        if generation == self._rules_generation:
            if len(self._rules_cache) + len(frozen) > RULES_CACHE_SIZE:
                self._rules_cache.clear()
            self._rules_cache.update(frozen)
        out.update(frozen)
        return out

    def _rules_changed(self, user_id: str) -> None:
        self._rules_generation += 1
        self._rules_cache.pop(user_id, None)

    async def put_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        conditions: list[Any] | None,
        pattern: str | None,
        actions: list[Any],
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        """Create or replace a user rule, placed as ``before``/``after`` say.

        Raises :class:`PlacementError` when ``before``/``after`` is not one of the user's
        rules of this kind. A new rule goes first (most important) unless placed; a replaced
        rule keeps its place unless placed. A new rule starts enabled.
        """

        def txn_fn(txn: Txn) -> None:
            rows = txn.select(
                "SELECT rule_id FROM push_rules WHERE user_id = ? AND kind = ?"
                " ORDER BY priority DESC, rule_id",
                (user_id, kind),
            )
            order = [str(r[0]) for r in rows]
            exists = rule_id in order
            anchor = before if before is not None else after
            if anchor is not None:
                if anchor == rule_id or anchor not in order:
                    raise PlacementError(anchor)
                if exists:
                    order.remove(rule_id)
                i = order.index(anchor)
                order.insert(i if before is not None else i + 1, rule_id)
            elif not exists:
                order.insert(0, rule_id)
            txn.execute(
                "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (user_id, kind, rule_id),
            )
            if not exists:
                txn.execute(
                    "DELETE FROM push_rule_settings WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    (user_id, kind, rule_id),
                )
            txn.execute(
                "INSERT INTO push_rules (user_id, kind, rule_id, priority, conditions, pattern,"
                " actions) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    kind,
                    rule_id,
                    0,
                    None if conditions is None else json.dumps(conditions),
                    pattern,
                    json.dumps(actions),
                ),
            )
            n = len(order)
            txn.executemany(
                "UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                [(n - i, user_id, kind, rid) for i, rid in enumerate(order)],
            )

        try:
            await self._db.run("put_push_rule", txn_fn)
        finally:
            self._rules_changed(user_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (user_id, kind, rule_id),
            )
            deleted = txn.rowcount > 0
            txn.execute(
                "DELETE FROM push_rule_settings WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (user_id, kind, rule_id),
            )
            return deleted

        try:
            return await self._db.run("delete_push_rule", txn_fn)
        finally:
            self._rules_changed(user_id)

    async def set_rule_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        try:
            await self._db.run(
                "set_push_rule_enabled", self._setting_txn, user_id, kind, rule_id, "enabled", enabled
            )
        finally:
            self._rules_changed(user_id)

    async def set_user_rule_actions(
        self, user_id: str, kind: str, rule_id: str, actions: list[Any]
    ) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE push_rules SET actions = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                (json.dumps(actions), user_id, kind, rule_id),
            )

        try:
            await self._db.run("set_push_rule_actions", txn_fn)
        finally:
            self._rules_changed(user_id)

    async def set_default_rule_actions(
        self, user_id: str, kind: str, rule_id: str, actions: list[Any]
    ) -> None:
        try:
            await self._db.run(
                "set_default_push_rule_actions",
                self._setting_txn,
                user_id,
                kind,
                rule_id,
                "actions",
                json.dumps(actions),
            )
        finally:
            self._rules_changed(user_id)

    @staticmethod
    def _setting_txn(txn: Txn, user_id: str, kind: str, rule_id: str, column: str, value: Any) -> None:
        assert column in ("enabled", "actions")
        txn.execute(
            f"UPDATE push_rule_settings SET {column} = ? WHERE user_id = ? AND kind = ?"
            " AND rule_id = ?",
            (value, user_id, kind, rule_id),
        )
        if txn.rowcount == 0:
            txn.execute(
                f"INSERT INTO push_rule_settings (user_id, kind, rule_id, {column})"
                " VALUES (?, ?, ?, ?)",
                (user_id, kind, rule_id, value),
            )

    # -- notifications ----------------------------------------------------------------

    async def add_pending(
        self,
        room_id: str,
        event_id: str,
        thread_id: str,
        ts: int,
        notifications: Sequence[NewNotification],
    ) -> None:
        """Store an event's notifications as pending, just before the event's transaction
        (one ``event_push_pending`` row; schema 0054's trigger turns it into
        ``event_push_actions`` rows with the event's position when the event is inserted).

        The caller holds the room's write lock, so any other pending row of the room belongs
        to an event that was never committed: those are deleted here. With no
        ``notifications`` nothing is written.
        """
        if not notifications:
            return
        packed = json.dumps([[n.user_id, n.highlight, n.actions] for n in notifications])

        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM event_push_pending WHERE room_id = ?", (room_id,))
            txn.execute(
                "INSERT INTO event_push_pending (event_id, room_id, thread_id, ts, notifications)"
                " VALUES (?, ?, ?, ?, ?)",
                (event_id, room_id, thread_id, ts, packed),
            )

        await self._db.run("add_pending_push_actions", txn_fn)

    async def add_push_actions(self, actions: Sequence[PushAction]) -> None:
        """Record notifications of events already in the timeline, with their positions
        (idempotent: a replay replaces them). For catching up on old events; new events go
        through :meth:`add_pending`."""

        def txn_fn(txn: Txn) -> None:
            txn.executemany(
                "DELETE FROM event_push_actions WHERE user_id = ? AND event_id = ?",
                [(a.user_id, a.event_id) for a in actions],
            )
            txn.executemany(
                f"INSERT INTO event_push_actions ({_ACTION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        a.user_id,
                        a.room_id,
                        a.event_id,
                        a.stream_pos,
                        a.thread_id,
                        a.highlight,
                        json.dumps(a.actions),
                        a.ts,
                    )
                    for a in actions
                ],
            )

        if actions:
            await self._db.run("add_push_actions", txn_fn)

    async def forget_bus_subscriber(self, name: str) -> None:
        """Drop the stored position of a retired bus subscriber (the old push evaluator,
        once :mod:`ruma.push.catch_up` has finished its work)."""

        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM bus_subscriber_positions WHERE name = ?", (name,))

        await self._db.run("forget_bus_subscriber", txn_fn)

    @staticmethod
    def _read_positions_txn(txn: Txn, user_id: str, room_id: str) -> dict[str, int]:
        """thread_id ('' = unthreaded) -> the stream position of the user's read receipt."""
        rows = txn.select(
            "SELECT r.thread_id, MAX(e.stream_position) FROM receipts r"
            " JOIN events e ON e.event_id = r.event_id"
            " WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN (?, ?)"
            " GROUP BY r.thread_id",
            (room_id, user_id, *_READ_TYPES),
        )
        return {str(r[0]): int(r[1]) for r in rows if r[1] is not None}

    def _counts_txn(self, txn: Txn, user_id: str, room_id: str) -> dict[str, Counts]:
        read = self._read_positions_txn(txn, user_id, room_id)
        base = read.get(_UNTHREADED, 0)
        rows = txn.select(
            "SELECT thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END)"
            " FROM event_push_actions WHERE user_id = ? AND room_id = ? AND stream_pos > ?"
            " GROUP BY thread_id",
            (user_id, room_id, base),
        )
        out: dict[str, Counts] = {}
        for thread_id, count, highlights in rows:
            cutoff = read.get(str(thread_id), 0)
            if cutoff > base:
                row = txn.select_one(
                    "SELECT COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END)"
                    " FROM event_push_actions WHERE user_id = ? AND room_id = ?"
                    " AND thread_id = ? AND stream_pos > ?",
                    (user_id, room_id, thread_id, cutoff),
                )
                assert row is not None
                count, highlights = row
            if count:
                out[str(thread_id)] = Counts(int(count), int(highlights or 0))
        return out

    async def get_unread_counts(
        self, user_id: str, room_ids: Collection[str]
    ) -> dict[str, dict[str, Counts]]:
        """room_id -> thread_id ('main' or a root) -> counts, for rooms with any unread."""
        rooms = list(room_ids)

        def txn_fn(txn: Txn) -> dict[str, dict[str, Counts]]:
            out = {}
            for room_id in rooms:
                counts = self._counts_txn(txn, user_id, room_id)
                if counts:
                    out[room_id] = counts
            return out

        if not rooms:
            return {}
        return await self._db.run("get_unread_counts", txn_fn)

    async def get_total_unread(self, user_id: str) -> int:
        """Unread notifications across all the user's rooms (a pusher's ``counts.unread``)."""

        def txn_fn(txn: Txn) -> int:
            rooms = [
                str(r[0])
                for r in txn.select(
                    "SELECT DISTINCT room_id FROM event_push_actions WHERE user_id = ?", (user_id,)
                )
            ]
            return sum(
                c.notifications for room in rooms for c in self._counts_txn(txn, user_id, room).values()
            )

        return await self._db.run("get_total_unread", txn_fn)

    async def get_notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[tuple[PushAction, bool]]:
        """The newest notifications below ``before`` (newest first), each with its read flag."""

        def txn_fn(txn: Txn) -> list[tuple[PushAction, bool]]:
            sql = (
                f"SELECT {_ACTION_COLS} FROM event_push_actions WHERE user_id = ?"
                " AND stream_pos IS NOT NULL"
            )
            params: list[Any] = [user_id]
            if before is not None:
                sql += " AND stream_pos < ?"
                params.append(before)
            if only_highlight:
                sql += " AND highlight = ?"
                params.append(True)
            sql += " ORDER BY stream_pos DESC LIMIT ?"
            params.append(limit)
            actions = [_action(r) for r in txn.select(sql, params)]
            reads: dict[str, dict[str, int]] = {}
            out = []
            for a in actions:
                if a.room_id not in reads:
                    reads[a.room_id] = self._read_positions_txn(txn, user_id, a.room_id)
                read = reads[a.room_id]
                cutoff = max(read.get(_UNTHREADED, 0), read.get(a.thread_id, 0))
                out.append((a, a.stream_pos <= cutoff))
            return out

        return await self._db.run("get_notifications", txn_fn)

    async def get_push_actions_after(
        self, user_id: str, after: int, limit: int, upto: int | None = None
    ) -> list[PushAction]:
        """Notifications of ``user_id`` with ``after < stream_pos <= upto``, oldest first.

        ``upto``: a settled stream position (events of different rooms may commit out of
        order; a reader that remembers how far it got must not read past it).
        """

        def txn_fn(txn: Txn) -> list[PushAction]:
            return [
                _action(r)
                for r in txn.select(
                    f"SELECT {_ACTION_COLS} FROM event_push_actions WHERE user_id = ?"
                    " AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos LIMIT ?",
                    (user_id, after, upto if upto is not None else 2**62, limit),
                )
            ]

        return await self._db.run("get_push_actions_after", txn_fn)

    # -- pushers ---------------------------------------------------------------------

    async def add_pusher(self, pusher: Pusher, *, append: bool) -> None:
        """Create or update a pusher; unless ``append``, other users' pushers with the same
        app ID and pushkey are deleted (the spec's ``append: false``)."""

        self._pusher_users_added.add(pusher.user_id)
        if self._pusher_users is not None:
            self._pusher_users.add(pusher.user_id)

        def txn_fn(txn: Txn) -> None:
            if not append:
                txn.execute(
                    "DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                    (pusher.app_id, pusher.pushkey, pusher.user_id),
                )
            row = txn.select_one(
                "SELECT last_stream_pos FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                (pusher.user_id, pusher.app_id, pusher.pushkey),
            )
            last = pusher.last_stream_pos if row is None else int(row[0])
            txn.execute(
                "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                (pusher.user_id, pusher.app_id, pusher.pushkey),
            )
            txn.execute(
                "INSERT INTO pushers (user_id, app_id, pushkey, kind, access_token_id, device_id,"
                " pushkey_ts, app_display_name, device_display_name, profile_tag, lang, data,"
                " last_stream_pos, failing_since)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    pusher.user_id,
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.kind,
                    pusher.access_token_id,
                    pusher.device_id,
                    pusher.pushkey_ts,
                    pusher.app_display_name,
                    pusher.device_display_name,
                    pusher.profile_tag,
                    pusher.lang,
                    json.dumps(pusher.data),
                    last,
                ),
            )

        await self._db.run("add_pusher", txn_fn)

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute(
                "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?",
                (user_id, app_id, pushkey),
            )
            return txn.rowcount > 0

        return await self._db.run("delete_pusher", txn_fn)

    def may_have_pushers(self, user_id: str) -> bool:
        """False only when ``user_id`` surely has no pusher (no read needed to say so)."""
        return self._pusher_users is None or user_id in self._pusher_users

    async def get_pushers(self, user_id: str | None = None) -> list[Pusher]:
        """Live pushers (of one user, or all); pushers of revoked tokens are removed."""
        if user_id is not None:
            if self._pusher_users is None:
                loaded = await self._db.run(
                    "get_pusher_users",
                    lambda txn: {str(r[0]) for r in txn.select("SELECT DISTINCT user_id FROM pushers")},
                )
                self._pusher_users = loaded | self._pusher_users_added
            if user_id not in self._pusher_users:
                return []

        def txn_fn(txn: Txn) -> list[Pusher]:
            where = "" if user_id is None else " AND p.user_id = ?"
            params: tuple[Any, ...] = () if user_id is None else (user_id,)
            txn.execute(
                "DELETE FROM pushers WHERE access_token_id IS NOT NULL AND NOT EXISTS"
                " (SELECT 1 FROM access_tokens a WHERE a.id = pushers.access_token_id)"
                + ("" if user_id is None else " AND user_id = ?"),
                params,
            )
            return [
                _pusher(r)
                for r in txn.select(
                    f"SELECT {_PUSHER_COLS} FROM pushers p WHERE {_LIVE}{where}"
                    " ORDER BY p.app_id, p.pushkey",
                    params,
                )
            ]

        return await self._db.run("get_pushers", txn_fn)

    async def update_pusher_progress(
        self, pusher: Pusher, last_stream_pos: int, failing_since: int | None
    ) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE pushers SET last_stream_pos = ?, failing_since = ? WHERE user_id = ?"
                " AND app_id = ? AND pushkey = ?",
                (last_stream_pos, failing_since, pusher.user_id, pusher.app_id, pusher.pushkey),
            )

        await self._db.run("update_pusher_progress", txn_fn)

    async def delete_pushers_for_users(self, user_ids: Iterable[str]) -> None:
        users = list(user_ids)

        def txn_fn(txn: Txn) -> None:
            txn.executemany("DELETE FROM pushers WHERE user_id = ?", [(u,) for u in users])

        await self._db.run("delete_pushers_for_users", txn_fn)


__all__ = ["Counts", "NewNotification", "PlacementError", "PushAction", "PushStore", "Pusher"]
