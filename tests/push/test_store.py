"""PushStore's contract on SQLite and PostgreSQL: rule order, settings, notifications and
pushers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.push import NewNotification, PlacementError, PushAction, Pusher, PushStore
from tests.sync.dbtest import PostgresDB, SQLiteDB

U = "@alice:test"


def action(event_id: str, pos: int, *, highlight: bool = False, room: str = "!r:test") -> PushAction:
    return PushAction(U, room, event_id, pos, "main", highlight, ["notify"], 1000 + pos)


def pusher(user: str = U, pushkey: str = "k", last: int = 0, token_id: int | None = None) -> Pusher:
    return Pusher(user, "app", pushkey, "http", token_id, None, 5, "App", "Dev", None, "en",
                  {"url": "http://g/_matrix/push/v1/notify"}, last, None)


class _StoreContract:
    def setUp(self) -> None:
        self.db = self.make_db()  # type: ignore[attr-defined]
        self.store = PushStore(self.db)

    def call(self, coro: Any) -> Any:
        d = coro if isinstance(coro, Deferred) else Deferred.fromCoroutine(coro)
        return self.successResultOf(d)  # type: ignore[attr-defined]

    def order(self, kind: str = "override") -> list[str]:
        rules, _ = self.call(self.store.get_rules(U))
        return [r.rule_id for r in sorted(rules, key=lambda r: -r.priority) if r.kind == kind]

    def put(self, rule_id: str, **kw: Any) -> None:
        self.call(self.store.put_rule(U, "override", rule_id, conditions=[], pattern=None, actions=[], **kw))

    def test_rule_order(self) -> None:
        """New rules first; before/after place; unknown anchors raise PlacementError."""
        self.put("a")
        self.put("b")
        self.put("c", after="b")
        self.assertEqual(self.order(), ["b", "c", "a"])
        self.put("a", before="b")
        self.assertEqual(self.order(), ["a", "b", "c"])
        f = self.failureResultOf(  # type: ignore[attr-defined]
            Deferred.fromCoroutine(
                self.store.put_rule(U, "override", "d", conditions=[], pattern=None, actions=[], before="zz")
            )
        )
        f.trap(PlacementError)
        self.assertTrue(self.call(self.store.delete_rule(U, "override", "a")))
        self.assertFalse(self.call(self.store.delete_rule(U, "override", "a")))
        self.assertEqual(self.order(), ["b", "c"])

    def test_settings(self) -> None:
        """enabled and default actions are remembered per rule; user rule actions update."""
        self.call(self.store.set_rule_enabled(U, "override", ".m.rule.master", True))
        self.call(self.store.set_default_rule_actions(U, "underride", ".m.rule.message", ["dont_notify"]))
        self.call(self.store.set_rule_enabled(U, "override", ".m.rule.master", False))
        _, settings = self.call(self.store.get_rules(U))
        by = {s.rule_id: s for s in settings}
        self.assertEqual(by[".m.rule.master"].enabled, False)
        self.assertEqual(by[".m.rule.message"].actions, ["dont_notify"])
        self.put("x")
        self.call(self.store.set_user_rule_actions(U, "override", "x", ["notify"]))
        rules, _ = self.call(self.store.get_rules(U))
        self.assertEqual(rules[0].actions, ["notify"])

    def test_actions_idempotent_and_listed(self) -> None:
        """Replaying an event's notifications does not duplicate them; listing pages backwards."""
        self.call(self.store.add_push_actions([action("$1", 10)]))
        self.call(self.store.add_push_actions([action("$1", 10)]))
        self.call(self.store.add_push_actions([action("$2", 20, highlight=True)]))
        self.call(self.store.add_push_actions([]))
        rows = self.call(self.store.get_notifications(U, None, 10, False))
        self.assertEqual([a.event_id for a, _ in rows], ["$2", "$1"])
        rows = self.call(self.store.get_notifications(U, 20, 10, False))
        self.assertEqual([a.event_id for a, _ in rows], ["$1"])
        rows = self.call(self.store.get_notifications(U, None, 10, True))
        self.assertEqual([a.event_id for a, _ in rows], ["$2"])
        counts = self.call(self.store.get_unread_counts(U, ["!r:test", "!other:test"]))
        self.assertEqual(set(counts), {"!r:test"})
        self.assertEqual((counts["!r:test"]["main"].notifications, counts["!r:test"]["main"].highlights), (2, 1))
        self.assertEqual(self.call(self.store.get_total_unread(U)), 2)
        after = self.call(self.store.get_push_actions_after(U, 10, 5))
        self.assertEqual([a.event_id for a in after], ["$2"])
        self.assertEqual(self.call(self.store.get_push_actions_after(U, 0, 5, 19)), [action("$1", 10)])

    # -- notifications written before their event's transaction ------------------------

    def insert_event(self, event_id: str, position: int | None, room: str = "!r:test") -> None:
        """An ``events`` row as the event store writes it (the trigger's side of the contract)."""
        self.call(self.db.run("test_insert_event", lambda txn: txn.execute(
            "INSERT INTO events (event_id, room_id, stream_position, depth, type, sender,"
            " origin_server_ts, json, outlier) VALUES (?, ?, ?, 1, 'm.room.message', '@b:test',"
            " 0, '{}', ?)",
            (event_id, room, position, position is None),
        )))

    def pending(self, event_id: str, room: str = "!r:test", *users: str) -> None:
        rows = [NewNotification(u, u == U, '["notify"]') for u in (users or (U,))]
        self.call(self.store.add_pending(room, event_id, "main", 1234, rows))

    def unread(self, room: str = "!r:test") -> int:
        counts = self.call(self.store.get_unread_counts(U, [room]))
        return sum(c.notifications for c in counts.get(room, {}).values())

    def test_pending_until_the_event_commits(self) -> None:
        """Pending notifications are invisible to every reader until their event is inserted
        with a stream position; then they have that position."""
        self.pending("$1", "!r:test", U, "@bob:test")
        self.assertEqual(self.unread(), 0)
        self.assertEqual(self.call(self.store.get_notifications(U, None, 10, False)), [])
        self.assertEqual(self.call(self.store.get_push_actions_after(U, 0, 10)), [])
        self.assertEqual(self.call(self.store.get_total_unread(U)), 0)
        self.insert_event("$1", 5)
        self.assertEqual(self.unread(), 1)
        (a,) = self.call(self.store.get_push_actions_after(U, 0, 10))
        self.assertEqual((a.event_id, a.stream_pos, a.highlight, a.actions, a.ts), ("$1", 5, True, ["notify"], 1234))
        (b,) = self.call(self.store.get_push_actions_after("@bob:test", 0, 10))
        self.assertEqual((b.stream_pos, b.highlight), (5, False))

    def test_outlier_joining_the_timeline(self) -> None:
        """An event stored as an outlier (no position) that later joins the timeline: its
        notifications become visible with the position it gets."""
        self.insert_event("$o", None)
        self.pending("$o")
        self.assertEqual(self.unread(), 0)
        self.call(self.db.run("test_deoutlier", lambda txn: txn.execute(
            "UPDATE events SET stream_position = 8, outlier = ? WHERE event_id = '$o'", (False,)
        )))
        (a,) = self.call(self.store.get_push_actions_after(U, 0, 10))
        self.assertEqual(a.stream_pos, 8)

    def test_backfill_and_leftovers(self) -> None:
        """Backfilled history (negative positions) never notifies; the pending rows of an
        event that never committed are dropped by the room's next write, and survive (still
        invisible) a restart until then."""
        self.pending("$old")
        self.insert_event("$old", -3)
        self.pending("$lost")  # the process dies before "$lost" is written
        self.store = PushStore(self.make_db())  # type: ignore[attr-defined]
        self.db = self.store._db
        self.assertEqual(self.unread(), 0)
        self.pending("$next")
        self.insert_event("$next", 12)
        self.assertEqual(self.unread(), 1)
        left = self.call(self.db.run("get_left", lambda txn: txn.select(
            "SELECT event_id FROM event_push_pending"
        )))
        self.assertEqual(left, [])
        # Other rooms' pending rows are not touched by this room's writes.
        self.pending("$elsewhere", "!other:test")
        self.pending("$again")
        self.insert_event("$elsewhere", 13, "!other:test")
        self.assertEqual(self.unread("!other:test"), 1)

    def test_pushers(self) -> None:
        """Pushers are stored, keep their progress on update, and append decides sharing."""
        self.call(self.store.add_pusher(pusher(last=7), append=False))
        self.call(self.store.update_pusher_progress(pusher(), 9, 123))
        self.call(self.store.add_pusher(pusher(last=0), append=False))
        (p,) = self.call(self.store.get_pushers(U))
        self.assertEqual((p.last_stream_pos, p.failing_since, p.data["url"]), (9, None, "http://g/_matrix/push/v1/notify"))
        self.call(self.store.add_pusher(pusher(user="@bob:test"), append=True))
        self.assertEqual(len(self.call(self.store.get_pushers())), 2)
        self.call(self.store.add_pusher(pusher(user="@bob:test"), append=False))
        self.assertEqual([p.user_id for p in self.call(self.store.get_pushers())], ["@bob:test"])
        self.assertTrue(self.call(self.store.delete_pusher("@bob:test", "app", "k")))
        self.assertEqual(self.call(self.store.get_pushers()), [])

    def test_pusher_of_revoked_token(self) -> None:
        """A pusher bound to an access token that no longer exists is gone."""
        self.call(self.store.add_pusher(pusher(token_id=424242), append=False))
        self.assertEqual(self.call(self.store.get_pushers(U)), [])


class SQLitePushStoreTests(_StoreContract, SQLiteDB):
    pass


class PostgresPushStoreTests(_StoreContract, PostgresDB):
    pass
