"""SessionStore's contract on SQLite and PostgreSQL: refresh, login and OpenID tokens."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.accounts import AccountStore, hash_token
from ruma.storage.sessions import SessionStore
from tests.sync.dbtest import PostgresDB, SQLiteDB


class _Contract:
    def setUp(self) -> None:
        db = self.make_db()  # type: ignore[attr-defined]
        self.accounts = AccountStore(db)
        self.store = SessionStore(db)

    def call(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

    def test_refresh_tokens(self) -> None:
        """A refresh token is used once, revoking its access token; expiring access tokens
        carry their expiry; a deleted device's refresh token is refused."""
        self.call(self.accounts.create_user("@a:t", None, created_ts=0))
        self.call(self.accounts.create_device("@a:t", "D", None, created_ts=0))
        tid = self.call(self.accounts.add_access_token(hash_token("at"), "@a:t", "D", created_ts=0, expires_ts=50))
        info = self.call(self.accounts.get_token_info(hash_token("at")))
        self.assertEqual(info.expires_ts, 50)
        self.call(self.store.add_refresh_token("rt", "@a:t", "D", tid, now_ms=0, expires_ts=None))
        self.assertEqual(self.call(self.store.use_refresh_token("rt", 10)), ("@a:t", "D"))
        self.assertIsNone(self.call(self.accounts.get_token_info(hash_token("at"))))
        self.assertIsNone(self.call(self.store.use_refresh_token("rt", 10)))
        tid2 = self.call(self.accounts.add_access_token(hash_token("at2"), "@a:t", "D", created_ts=0))
        self.call(self.store.add_refresh_token("rt2", "@a:t", "D", tid2, now_ms=0, expires_ts=None))
        self.call(self.accounts.delete_devices("@a:t", ["D"]))
        self.assertIsNone(self.call(self.store.use_refresh_token("rt2", 10)))

    def test_login_and_openid_tokens(self) -> None:
        """Login tokens work once before expiry; OpenID tokens until expiry."""
        self.call(self.store.add_login_token("lt", "@a:t", 100))
        self.assertEqual(self.call(self.store.use_login_token("lt", 50)), "@a:t")
        self.assertIsNone(self.call(self.store.use_login_token("lt", 50)))
        self.call(self.store.add_login_token("old", "@a:t", 100))
        self.assertIsNone(self.call(self.store.use_login_token("old", 100)))
        self.call(self.store.add_openid_token("ot", "@a:t", 100))
        self.assertEqual(self.call(self.store.get_openid_user("ot", 99)), "@a:t")
        self.assertIsNone(self.call(self.store.get_openid_user("ot", 100)))


class SQLiteSessionStoreTests(_Contract, SQLiteDB):
    pass


class PostgresSessionStoreTests(_Contract, PostgresDB):
    pass
