"""PushStore's contract on SQLite and PostgreSQL: rule order, settings, notifications and
pushers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.push import PlacementError, PushAction, Pusher, PushStore
from tests.sync.dbtest import PostgresDB, SQLiteDB

U = "@alice:test"


def action(event_id: str, pos: int, *, highlight: bool = False, room: str = "!r:test") -> PushAction:
    return PushAction(U, room, event_id, pos, "main", highlight, ["notify"], 1000 + pos)


def pusher(user: str = U, pushkey: str = "k", last: int = 0, token_id: int | None = None) -> Pusher:
    return Pusher(user, "app", pushkey, "http", token_id, None, 5, "App", "Dev", None, "en",
                  {"url": "http://g/_matrix/push/v1/notify"}, last, None)


class _StoreContract:
    def setUp(self) -> None:
        self.store = PushStore(self.make_db())  # type: ignore[attr-defined]

    def call(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

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
        self.call(self.store.add_push_actions("!r:test", "$1", [action("$1", 10)]))
        self.call(self.store.add_push_actions("!r:test", "$1", [action("$1", 10)]))
        self.call(self.store.add_push_actions("!r:test", "$2", [action("$2", 20, highlight=True)]))
        self.assertIsNone(self.call(self.store.add_push_actions("!r:test", "$3", [])))
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
