"""The AccountStore contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.accounts import AccountStore, Profile, hash_token
from ruma.storage.database import Database
from tests.storage.engines import EngineTestCase, PostgresEngine, SQLiteEngine


class AccountStoreContract(EngineTestCase):
    def setUp(self) -> None:
        self.db: Database = self.make_db()
        self.store = AccountStore(self.db)

    def run_(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def test_create_and_get_user(self) -> None:
        """A created user reads back with every column; unknown users are None."""
        self.assertTrue(
            self.run_(self.store.create_user("@a:hs", "hash", created_ts=5, is_admin=True))
        )
        user = self.run_(self.store.get_user("@a:hs"))
        self.assertEqual(user.user_id, "@a:hs")
        self.assertEqual(user.password_hash, "hash")
        self.assertEqual(user.created_ts, 5)
        self.assertTrue(user.is_admin)
        self.assertFalse(user.is_guest)
        self.assertFalse(user.deactivated)
        self.assertIsNone(self.run_(self.store.get_user("@b:hs")))

    def test_user_ids_unique_case_insensitively(self) -> None:
        """A second registration of the same ID in another case is refused, nothing written."""
        self.assertTrue(self.run_(self.store.create_user("@a:hs", None, created_ts=1)))
        self.assertFalse(self.run_(self.store.create_user("@A:hs", None, created_ts=2)))
        self.assertTrue(self.run_(self.store.user_exists("@A:HS".replace("HS", "hs"))))
        self.assertIsNone(self.run_(self.store.get_user("@A:hs")))
        self.assertEqual(self.run_(self.store.count_users()), 1)

    def test_tokens_are_found_by_hash_only(self) -> None:
        """A token is looked up by its SHA-256; the raw token is never stored."""
        self.run_(self.store.create_user("@a:hs", None, created_ts=1))
        self.run_(self.store.create_device("@a:hs", "DEV", "phone", created_ts=1))
        token_id = self.run_(
            self.store.add_access_token(hash_token("secret"), "@a:hs", "DEV", created_ts=2)
        )
        info = self.run_(self.store.get_token_info(hash_token("secret")))
        self.assertEqual((info.token_id, info.user_id, info.device_id), (token_id, "@a:hs", "DEV"))
        self.assertIsNone(self.run_(self.store.get_token_info("secret")))
        rows = self.successResultOf(
            self.db.run("get_raw", lambda t: t.select("SELECT token_hash FROM access_tokens"))
        )
        self.assertEqual(rows, [(hash_token("secret"),)])

    def test_delete_devices_revokes_their_tokens(self) -> None:
        """Deleting a device deletes its tokens and takes a device-list stream position."""
        self.run_(self.store.create_user("@a:hs", None, created_ts=1))
        for dev in ("D1", "D2"):
            self.run_(self.store.create_device("@a:hs", dev, None, created_ts=1))
            self.run_(self.store.add_access_token(hash_token(dev), "@a:hs", dev, created_ts=1))
        before = self.db.positions.current
        self.run_(self.store.delete_devices("@a:hs", ["D1"]))
        self.assertGreater(self.db.positions.current, before)
        self.assertIsNone(self.run_(self.store.get_token_info(hash_token("D1"))))
        self.assertIsNotNone(self.run_(self.store.get_token_info(hash_token("D2"))))
        devices = self.run_(self.store.get_devices("@a:hs"))
        self.assertEqual([d.device_id for d in devices], ["D2"])

    def test_delete_all_devices_except_one(self) -> None:
        """delete_all_devices keeps the named device and its token."""
        self.run_(self.store.create_user("@a:hs", None, created_ts=1))
        for dev in ("D1", "D2", "D3"):
            self.run_(self.store.create_device("@a:hs", dev, None, created_ts=1))
            self.run_(self.store.add_access_token(hash_token(dev), "@a:hs", dev, created_ts=1))
        self.run_(self.store.delete_all_devices("@a:hs", except_device_id="D2"))
        self.assertEqual([d.device_id for d in self.run_(self.store.get_devices("@a:hs"))], ["D2"])
        self.assertIsNotNone(self.run_(self.store.get_token_info(hash_token("D2"))))
        self.assertIsNone(self.run_(self.store.get_token_info(hash_token("D3"))))

    def test_create_device_twice_reuses_it(self) -> None:
        """A second create keeps the device and only updates a given display name."""
        self.run_(self.store.create_user("@a:hs", None, created_ts=1))
        self.assertTrue(self.run_(self.store.create_device("@a:hs", "D", "one", created_ts=1)))
        self.assertFalse(self.run_(self.store.create_device("@a:hs", "D", None, created_ts=2)))
        self.assertEqual(self.run_(self.store.get_device("@a:hs", "D")).display_name, "one")
        self.assertFalse(self.run_(self.store.create_device("@a:hs", "D", "two", created_ts=3)))
        device = self.run_(self.store.get_device("@a:hs", "D"))
        self.assertEqual((device.display_name, device.created_ts), ("two", 1))

    def test_last_seen(self) -> None:
        """Last-seen IP, user agent and time are recorded on the device."""
        self.run_(self.store.create_user("@a:hs", None, created_ts=1))
        self.run_(self.store.create_device("@a:hs", "D", None, created_ts=1))
        self.run_(
            self.store.update_device_last_seen("@a:hs", "D", ip="10.0.0.1", user_agent="ua", ts=9)
        )
        d = self.run_(self.store.get_device("@a:hs", "D"))
        self.assertEqual((d.last_seen_ip, d.last_seen_user_agent, d.last_seen_ts), ("10.0.0.1", "ua", 9))

    def test_deactivate(self) -> None:
        """Deactivation forgets the password and removes devices and tokens, keeps the row."""
        self.run_(self.store.create_user("@a:hs", "hash", created_ts=1))
        self.run_(self.store.create_device("@a:hs", "D", None, created_ts=1))
        self.run_(self.store.add_access_token(hash_token("t"), "@a:hs", "D", created_ts=1))
        self.run_(self.store.deactivate_user("@a:hs"))
        user = self.run_(self.store.get_user("@a:hs"))
        self.assertTrue(user.deactivated)
        self.assertIsNone(user.password_hash)
        self.assertIsNone(self.run_(self.store.get_token_info(hash_token("t"))))
        self.assertEqual(self.run_(self.store.get_devices("@a:hs")), [])
        self.assertTrue(self.run_(self.store.user_exists("@a:hs")))

    def test_profile(self) -> None:
        """Profiles read back what was set; unknown users have no profile."""
        self.run_(self.store.create_user("@a:hs", None, created_ts=1, displayname="a"))
        self.assertEqual(self.run_(self.store.get_profile("@a:hs")), Profile("a", None))
        self.run_(self.store.set_displayname("@a:hs", "Alice"))
        self.run_(self.store.set_avatar_url("@a:hs", "mxc://hs/x"))
        self.assertEqual(
            self.run_(self.store.get_profile("@a:hs")), Profile("Alice", "mxc://hs/x")
        )
        self.run_(self.store.set_displayname("@a:hs", None))
        self.assertEqual(self.run_(self.store.get_profile("@a:hs")), Profile(None, "mxc://hs/x"))
        self.assertIsNone(self.run_(self.store.get_profile("@nobody:hs")))

    def test_password_and_admin(self) -> None:
        """Password hash and admin flag can be changed."""
        self.run_(self.store.create_user("@a:hs", "h1", created_ts=1))
        self.run_(self.store.set_password_hash("@a:hs", "h2"))
        self.run_(self.store.set_admin("@a:hs", True))
        user = self.run_(self.store.get_user("@a:hs"))
        self.assertEqual((user.password_hash, user.is_admin), ("h2", True))

    def test_registration_token_uses(self) -> None:
        """A limited registration token is refused once its uses are spent."""
        self.assertTrue(self.run_(self.store.use_registration_token("tok", 2)))
        self.assertTrue(self.run_(self.store.use_registration_token("tok", 2)))
        self.assertFalse(self.run_(self.store.use_registration_token("tok", 2)))
        self.assertEqual(self.run_(self.store.get_registration_token_uses("tok")), 2)
        for _ in range(3):
            self.assertTrue(self.run_(self.store.use_registration_token("free", None)))

    def test_survives_restart(self) -> None:
        """Data written before reopening the database is there after (same file/schema)."""
        self.run_(self.store.create_user("@a:hs", "h", created_ts=1))
        again = AccountStore(self.make_db())
        self.assertEqual(self.run_(again.get_user("@a:hs")).password_hash, "h")


class AccountStoreSQLiteTests(AccountStoreContract, SQLiteEngine):
    pass


class AccountStorePostgresTests(AccountStoreContract, PostgresEngine):
    pass


del AccountStoreContract
