"""POST /rooms/{id}/upgrade: a new room of the new version with the old state, predecessor,
tombstone, restricted old power levels, moved aliases and directory listing, carried bans."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import TestHomeserver, make_homeserver


def q(s: str) -> str:
    return quote(s, safe="")


class UpgradeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")
        self.carol, self.tc = self.hs.register("carol")

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, out = self.hs.request(method, path, body, token)
        self.assertEqual(status, 200, out)
        return out

    def state(self, room: str, etype: str, key: str = "", token: str | None = None) -> Any:
        return self.ok("GET", f"/rooms/{q(room)}/state/{etype}/{q(key)}", None, token or self.ta)

    def make_room(self, version: str) -> str:
        room: str = self.ok("POST", "/createRoom", {
            "preset": "public_chat", "visibility": "public", "room_version": version,
            "name": "Old", "topic": "old topic", "room_alias_name": "main",
            "initial_state": [{"type": "m.room.history_visibility",
                               "content": {"history_visibility": "world_readable"}}],
        }, self.ta)["room_id"]
        self.ok("POST", f"/join/{q(room)}", {}, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/ban", {"user_id": self.carol}, self.ta)
        return room

    def check_upgrade(self, old_version: str, new_version: str) -> None:
        old = self.make_room(old_version)
        new = self.ok("POST", f"/rooms/{q(old)}/upgrade", {"new_version": new_version},
                      self.ta)["replacement_room"]
        create = self.state(new, "m.room.create")
        self.assertEqual(create["room_version"], new_version)
        self.assertEqual(create["predecessor"]["room_id"], old)
        self.assertEqual(self.state(new, "m.room.name")["name"], "Old")
        self.assertEqual(self.state(new, "m.room.topic")["topic"], "old topic")
        self.assertEqual(self.state(new, "m.room.join_rules")["join_rule"], "public")
        self.assertEqual(self.state(new, "m.room.history_visibility")["history_visibility"],
                         "world_readable")
        self.assertEqual(self.state(new, "m.room.member", self.carol)["membership"], "ban")
        tomb = self.state(old, "m.room.tombstone")
        self.assertEqual(tomb["replacement_room"], new)
        old_pl = self.state(old, "m.room.power_levels")
        self.assertGreaterEqual(old_pl["events_default"], 50)
        self.assertGreaterEqual(old_pl["invite"], 50)
        # Ordinary members can no longer talk in the old room.
        status, _ = self.hs.request("PUT", f"/rooms/{q(old)}/send/m.room.message/t1",
                                    {"msgtype": "m.text", "body": "hi"}, self.tb)
        self.assertEqual(status, 403)
        # The alias and the directory listing moved.
        self.assertEqual(self.ok("GET", f"/directory/room/{q('#main:test')}")["room_id"], new)
        self.assertEqual(self.state(new, "m.room.canonical_alias")["alias"], "#main:test")
        listed = [r["room_id"] for r in self.ok("GET", "/publicRooms")["chunk"]]
        self.assertIn(new, listed)
        self.assertNotIn(old, listed)
        # Bob can follow.
        self.ok("POST", f"/join/{q(new)}", {}, self.tb)

    def test_upgrade_v10_to_v12(self) -> None:
        """Upgrading a v10 room to v12 (creators outside power levels)."""
        self.check_upgrade("10", "12")

    def test_upgrade_v12_to_v12(self) -> None:
        """Upgrading a v12 room to a new v12 room."""
        self.check_upgrade("12", "12")

    def test_upgrade_v12_to_v11(self) -> None:
        """Upgrading to an older version without privileged creators keeps the upgrader's
        power (raised to build the room, then the copied levels)."""
        self.check_upgrade("12", "11")

    def test_errors(self) -> None:
        """Unknown version 400 M_UNSUPPORTED_ROOM_VERSION; a member without power 403;
        upgrading twice 400; a missing new_version 400."""
        old = self.make_room("11")
        status, out = self.hs.request("POST", f"/rooms/{q(old)}/upgrade",
                                      {"new_version": "999"}, self.ta)
        self.assertEqual((status, out["errcode"]), (400, "M_UNSUPPORTED_ROOM_VERSION"))
        status, out = self.hs.request("POST", f"/rooms/{q(old)}/upgrade",
                                      {"new_version": "12"}, self.tb)
        self.assertEqual((status, out["errcode"]), (403, "M_FORBIDDEN"))
        status, out = self.hs.request("POST", f"/rooms/{q(old)}/upgrade", {}, self.ta)
        self.assertEqual((status, out["errcode"]), (400, "M_MISSING_PARAM"))
        self.ok("POST", f"/rooms/{q(old)}/upgrade", {"new_version": "12"}, self.ta)
        status, out = self.hs.request("POST", f"/rooms/{q(old)}/upgrade",
                                      {"new_version": "12"}, self.ta)
        self.assertEqual(status, 400)
