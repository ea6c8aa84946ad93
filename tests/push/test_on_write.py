"""Push rules evaluated as events are persisted (ruma.push.evaluation), on SQLite and
PostgreSQL: counts are right the moment an event is visible (no bus delivery in between),
survive a restart, cost no stream row of their own, and follow the room's state (members,
display names, power levels) through the per-room cache."""

from __future__ import annotations

from typing import Any

from ruma.storage.database import Database
from ruma.storage.events import PersistPlan, PersistResult
from tests.push.helpers import PushHomeserver, make_push_homeserver
from tests.sync.dbtest import PostgresDB, SQLiteDB


class _OnWriteContract:
    # Provided by the engine mixin and SynchronousTestCase.
    make_db: Any
    assertEqual: Any
    assertTrue: Any
    addCleanup: Any

    def start(self, data_dir: str | None = None) -> PushHomeserver:
        db: Database = self.make_db()
        hs = make_push_homeserver(self, data_dir, db)  # type: ignore[arg-type]
        return hs

    def setUp(self) -> None:
        self.hs = self.start()
        self.alice, self.a_token = self.hs.register("alice")
        self.bob, self.b_token = self.hs.register("bob")
        self.carol, self.c_token = self.hs.register("carol")
        self.room = self.hs.create_room(self.bob, preset="public_chat")
        self.hs.join(self.alice, self.room)
        self.hs.join(self.carol, self.room)

    def counts(self, token: str, hs: PushHomeserver | None = None) -> dict[str, int]:
        body = (hs or self.hs).sync(token)
        return dict(body["rooms"]["join"][self.room]["unread_notifications"])

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        d = self.hs.db.run("get_test_rows", lambda t: t.select(sql, params))
        return list(self.hs.test_case.successResultOf(d))

    def test_counts_with_the_event(self) -> None:
        """A sync right after the send (no clock turn, no bus delivery) already counts it;
        the mention highlights; the sender is never notified."""
        body = self.hs.sync(self.a_token)
        self.hs.send(self.bob, self.room, "one")
        self.hs.send(self.bob, self.room, "hi alice")
        self.assertEqual(self.counts(self.a_token), {"notification_count": 2, "highlight_count": 1})
        self.assertEqual(self.counts(self.c_token), {"notification_count": 2, "highlight_count": 0})
        self.assertEqual(self.counts(self.b_token)["notification_count"], 0)
        nxt = self.hs.sync(self.a_token, since=body["next_batch"])
        self.assertEqual(
            nxt["rooms"]["join"][self.room]["unread_notifications"]["notification_count"], 2
        )

    def test_no_stream_row_of_its_own(self) -> None:
        """Each message takes one stream position (its own), none for its notifications."""
        (before,) = self.rows("SELECT COUNT(*) FROM stream")
        for i in range(3):
            self.hs.send(self.bob, self.room, f"m{i}")
        (after,) = self.rows("SELECT COUNT(*) FROM stream")
        self.assertEqual(after[0] - before[0], 3)
        self.assertEqual(
            self.rows("SELECT COUNT(*) FROM stream WHERE kind = 'push_actions'"), [(0,)]
        )
        positions = self.rows(
            "SELECT a.stream_pos, e.stream_position FROM event_push_actions a"
            " JOIN events e ON e.event_id = a.event_id WHERE a.user_id = ?",
            (self.alice,),
        )
        self.assertTrue(positions and all(p == q for p, q in positions))

    def test_restart(self) -> None:
        """After a restart the counts are the same, and new events keep counting."""
        self.hs.send(self.bob, self.room, "one")
        self.hs.send(self.bob, self.room, "alice?")
        before = self.counts(self.a_token)
        again = self.start(self.hs.data_dir)
        self.assertEqual(self.counts(self.a_token, again), before)
        self.assertEqual(before, {"notification_count": 2, "highlight_count": 1})
        again.send(self.bob, self.room, "three")
        self.assertEqual(self.counts(self.a_token, again)["notification_count"], 3)

    def test_catch_up_after_upgrade(self) -> None:
        """Events the retired bus subscriber had not evaluated before an upgrade get their
        notifications at the next start, once."""
        self.hs.send(self.bob, self.room, "one")
        self.hs.send(self.bob, self.room, "alice?")
        ((first,),) = self.rows("SELECT MIN(stream_pos) FROM event_push_actions")

        def as_before_the_upgrade(txn: Any) -> None:
            txn.execute("DELETE FROM event_push_actions")
            txn.execute(
                "INSERT INTO bus_subscriber_positions (name, position) VALUES (?, ?)",
                ("push-evaluator", first - 1),
            )

        self.hs.test_case.successResultOf(self.hs.db.run("test_downgrade", as_before_the_upgrade))
        again = self.start(self.hs.data_dir)
        again.pump()
        self.assertEqual(
            self.counts(self.a_token, again), {"notification_count": 2, "highlight_count": 1}
        )
        self.assertEqual(
            self.rows(
                "SELECT COUNT(*) FROM bus_subscriber_positions WHERE name = 'push-evaluator'"
            ),
            [(0,)],
        )

    def test_failed_write_leaves_nothing(self) -> None:
        """When the event's transaction fails after its notifications were stored, nobody
        sees them; the room's next write removes them."""
        store = self.hs.rooms.store
        real = store.persist

        async def failing(plan: PersistPlan) -> PersistResult:
            raise RuntimeError("disk full")

        store.persist = failing  # type: ignore[method-assign]
        d = self.hs.rooms.messages.send_message(
            self.bob, self.room, "m.room.message", {"msgtype": "m.text", "body": "lost"}, None
        )
        self.hs.test_case.failureResultOf(_deferred(d), RuntimeError)
        store.persist = real  # type: ignore[method-assign]
        self.assertEqual(self.counts(self.a_token)["notification_count"], 0)
        self.assertTrue(self.rows("SELECT COUNT(*) FROM event_push_pending")[0][0] > 0)
        self.hs.send(self.bob, self.room, "kept")
        self.assertEqual(self.counts(self.a_token)["notification_count"], 1)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM event_push_pending"), [(0,)])

    def test_follows_room_state(self) -> None:
        """Joins, leaves, display names and power levels after the room's state was cached
        decide the next events' notifications."""
        self.hs.send(self.bob, self.room, "warm the cache")
        dave, d_token = self.hs.register("dave")
        self.hs.join(dave, self.room)
        self.hs.send(self.bob, self.room, "for the newcomer too")
        self.assertEqual(self.counts(d_token)["notification_count"], 1)
        # A new display name is what the legacy display-name rule matches.
        status, _ = self.hs.request(
            "PUT",
            f"/rooms/{self.room}/state/m.room.member/{self.alice}",
            {"membership": "join", "displayname": "Wonderland"},
            token=self.a_token,
        )
        self.assertEqual(status, 200)
        self.hs.send(self.bob, self.room, "hello wonderland")
        self.assertEqual(self.counts(self.a_token)["highlight_count"], 1)
        # @room needs the notification level: carol (level 0) gets it once it is 0.
        self.hs.send(self.carol, self.room, "@room one")
        self.assertEqual(self.counts(d_token)["highlight_count"], 0)
        _, levels = self.hs.request(
            "GET", f"/rooms/{self.room}/state/m.room.power_levels", token=self.b_token
        )
        levels["notifications"] = {"room": 0}
        status, _ = self.hs.request(
            "PUT", f"/rooms/{self.room}/state/m.room.power_levels", levels, token=self.b_token
        )
        self.assertEqual(status, 200)
        self.hs.send(self.carol, self.room, "@room two")
        self.assertEqual(self.counts(d_token)["highlight_count"], 1)
        # Gone: no more notifications.
        status, _ = self.hs.request("POST", f"/rooms/{self.room}/leave", {}, token=d_token)
        self.assertEqual(status, 200)
        (n,) = self.rows("SELECT COUNT(*) FROM event_push_actions WHERE user_id = ?", (dave,))
        self.hs.send(self.bob, self.room, "after dave left")
        self.assertEqual(
            self.rows("SELECT COUNT(*) FROM event_push_actions WHERE user_id = ?", (dave,)), [n]
        )

    def test_rule_change_applies_to_the_next_event(self) -> None:
        """Rules cached per room are regrouped when anyone's rules change."""
        self.hs.send(self.bob, self.room, "one")
        self.hs.request(
            "PUT", f"/pushrules/global/room/{self.room}", {"actions": []}, token=self.a_token
        )
        self.hs.send(self.bob, self.room, "two")
        self.assertEqual(self.counts(self.a_token)["notification_count"], 1)
        self.assertEqual(self.counts(self.c_token)["notification_count"], 2)

    def test_pusher_woken_after_commit(self) -> None:
        """The gateway hears of a notification once its event is stored."""
        status, _ = self.hs.request(
            "POST",
            "/pushers/set",
            {
                "pushkey": "pk",
                "kind": "http",
                "app_id": "app",
                "app_display_name": "App",
                "device_display_name": "Phone",
                "lang": "en",
                "data": {"url": "http://gateway.example/_matrix/push/v1/notify"},
            },
            token=self.a_token,
        )
        self.assertEqual(status, 200)
        event_id = self.hs.send(self.bob, self.room, "ping")
        self.hs.pump()
        (got,) = self.hs.gateway.received
        self.assertEqual(
            (got["notification"]["event_id"], got["notification"]["counts"]),
            (event_id, {"unread": 1}),
        )


def _deferred(coro: Any) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coro)


class SQLiteOnWriteTests(_OnWriteContract, SQLiteDB):
    pass


class PostgresOnWriteTests(_OnWriteContract, PostgresDB):
    pass
