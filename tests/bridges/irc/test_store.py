"""The IRC bridge's store on SQLite and PostgreSQL (ruma.storage.irc)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.irc import IrcStore, Portal, PuppetRow, RelayedMessage
from tests.storage.engines import PostgresEngine, SQLiteEngine


class IrcStoreContract:
    make_db: Any
    successResultOf: Any
    assertEqual: Any
    assertIsNone: Any

    def wait(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def test_portals(self) -> None:
        """A channel has one portal whatever its case; it survives reopening the database."""
        store = IrcStore(self.make_db())
        p = self.wait(store.add_portal(Portal("net", "#Ruma", "!a:x", "static"), 1))
        again = self.wait(store.add_portal(Portal("net", "#ruma", "!b:x", "dynamic"), 2))
        self.assertEqual(again, p)
        self.wait(store.add_portal(Portal("net", "#two", "!c:x", "dynamic"), 3))
        reopened = IrcStore(self.make_db())
        self.assertEqual([x.channel for x in self.wait(reopened.get_portals("net"))],
                         ["#Ruma", "#two"])
        self.wait(reopened.delete_portal("net", "#TWO"))
        self.assertEqual(len(self.wait(reopened.get_portals())), 1)

    def test_puppets_virtual_users_dm_admin(self) -> None:
        """Puppets upsert their nick; virtual users their nick; DM and admin rooms map both
        ways."""
        store = IrcStore(self.make_db())
        self.wait(store.save_puppet(PuppetRow("net", "@a:x", "a[m]", None, 1)))
        self.wait(store.save_puppet(PuppetRow("net", "@a:x", "a[m]_", "al", 2)))
        self.assertEqual(self.wait(store.get_puppets("net")),
                         [PuppetRow("net", "@a:x", "a[m]_", "al", 2)])
        self.wait(store.set_virtual_user("@irc_net_bob:x", "net", "bob"))
        self.wait(store.set_virtual_user("@irc_net_bob:x", "net", "bobby"))
        self.assertEqual(self.wait(store.get_virtual_users("net")), {"@irc_net_bob:x": "bobby"})
        self.wait(store.set_dm_room("net", "@a:x", "Bob", "!dm:x"))
        self.assertEqual(self.wait(store.get_dm_room("net", "@a:x", "BOB")), "!dm:x")
        self.assertEqual(self.wait(store.get_dm_by_room("!dm:x")), ("net", "@a:x", "bob"))
        self.wait(store.set_admin_room("@a:x", "!adm:x"))
        self.assertEqual(self.wait(store.get_admin_room("@a:x")), "!adm:x")
        self.assertEqual(self.wait(store.get_admin_room_owner("!adm:x")), "@a:x")
        self.assertIsNone(self.wait(store.get_admin_room_owner("!other:x")))

    def test_messages(self) -> None:
        """Relayed messages are found by event ID and by IRC msgid; adding twice is a no-op."""
        store = IrcStore(self.make_db())
        m = RelayedMessage("$e", "!r:x", "net", "#c", "bob", "m1", "hi", "to_matrix", 5)
        self.wait(store.add_message(m))
        self.wait(store.add_message(m))
        self.assertEqual(self.wait(store.get_message("$e")), m)
        self.assertEqual(self.wait(store.get_message_by_msgid("net", "m1")), m)


class IrcStoreSQLiteTests(IrcStoreContract, SQLiteEngine):
    pass


class IrcStorePostgresTests(IrcStoreContract, PostgresEngine):
    pass
