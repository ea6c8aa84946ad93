"""PushStore's caches on SQLite and PostgreSQL: batched rule reads and the pusher-user set
never hide a write."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.push import PushStore
from tests.push.test_store import pusher
from tests.sync.dbtest import PostgresDB, SQLiteDB

A = "@alice:test"
B = "@bob:test"


class _CacheContract:
    def setUp(self) -> None:
        self.db = self.make_db()  # type: ignore[attr-defined]
        self.store = PushStore(self.db)

    def call(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

    def test_rules_for_users_batch_and_invalidation(self) -> None:
        """Several users' rules come back in one read, and each rule write is seen at once
        (put, enable, actions, delete) even though the first read filled the cache."""
        self.call(self.store.put_rule(A, "override", "a1", conditions=[], pattern=None, actions=[]))
        found = self.call(self.store.get_rules_for_users([A, B]))
        self.assertEqual([r.rule_id for r in found[A][0]], ["a1"])
        self.assertEqual(found[B], ([], []))
        self.call(self.store.put_rule(B, "content", "b1", conditions=None, pattern="x", actions=["notify"]))
        self.call(self.store.set_rule_enabled(A, "override", ".m.rule.master", True))
        found = self.call(self.store.get_rules_for_users([A, B]))
        self.assertEqual([r.rule_id for r in found[B][0]], ["b1"])
        self.assertEqual([(s.rule_id, s.enabled) for s in found[A][1]], [(".m.rule.master", True)])
        self.call(self.store.set_user_rule_actions(B, "content", "b1", ["dont_notify"]))
        self.assertEqual(self.call(self.store.get_rules(B))[0][0].actions, ["dont_notify"])
        self.call(self.store.set_default_rule_actions(A, "underride", ".m.rule.message", []))
        settings = {s.rule_id: s for s in self.call(self.store.get_rules(A))[1]}
        self.assertEqual(settings[".m.rule.message"].actions, [])
        self.call(self.store.delete_rule(A, "override", "a1"))
        self.assertEqual(self.call(self.store.get_rules(A))[0], [])

    def test_cached_rules_are_copies(self) -> None:
        """Changing a returned list does not change what the next read returns."""
        self.call(self.store.put_rule(A, "override", "a1", conditions=[], pattern=None, actions=[]))
        self.call(self.store.get_rules(A))[0].clear()
        self.assertEqual(len(self.call(self.store.get_rules(A))[0]), 1)

    def test_pushers_of_a_user_first_seen_without_any(self) -> None:
        """A user asked about before having pushers gets them once added (the set of users
        with pushers grows with add_pusher), and deleting still empties the list."""
        self.assertEqual(self.call(self.store.get_pushers(A)), [])
        self.call(self.store.add_pusher(pusher(user=A), append=False))
        self.assertEqual([p.user_id for p in self.call(self.store.get_pushers(A))], [A])
        self.assertEqual(self.call(self.store.get_pushers(B)), [])
        self.assertTrue(self.call(self.store.delete_pusher(A, "app", "k")))
        self.assertEqual(self.call(self.store.get_pushers(A)), [])

    def test_pushers_written_by_another_store_before_first_look(self) -> None:
        """The set is loaded from the table, so pushers stored earlier (e.g. before a
        restart) are found."""
        self.call(PushStore(self.db).add_pusher(pusher(user=B), append=False))
        self.assertEqual([p.user_id for p in self.call(self.store.get_pushers(B))], [B])


class SQLitePushCacheTests(_CacheContract, SQLiteDB):
    pass


class PostgresPushCacheTests(_CacheContract, PostgresDB):
    pass
