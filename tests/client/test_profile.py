"""/profile endpoints and the propagation of profile changes into joined rooms."""

from __future__ import annotations

from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import make_homeserver


def q(s: str) -> str:
    return quote(s, safe="")


class ProfileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")

    def test_get_and_set(self) -> None:
        """Display name and avatar can be set, read whole or per field, and cleared."""
        path = f"/profile/{q(self.alice)}"
        status, _ = self.hs.request("PUT", path + "/displayname", {"displayname": "Al"}, self.ta)
        self.assertEqual(status, 200)
        self.hs.request("PUT", path + "/avatar_url", {"avatar_url": "mxc://test/abc"}, self.ta)
        self.assertEqual(self.hs.request("GET", path),
                         (200, {"displayname": "Al", "avatar_url": "mxc://test/abc"}))
        self.assertEqual(self.hs.request("GET", path + "/displayname"),
                         (200, {"displayname": "Al"}))
        self.assertEqual(self.hs.request("DELETE", path + "/avatar_url", None, self.ta)[0], 200)
        status, body = self.hs.request("GET", path + "/avatar_url")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_errors(self) -> None:
        """Another user's profile is 403 to write; unknown users 404; bad values 400."""
        status, body = self.hs.request(
            "PUT", f"/profile/{q(self.bob)}/displayname", {"displayname": "x"}, self.ta)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request("GET", f"/profile/{q('@nobody:test')}")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = self.hs.request("GET", f"/profile/{q('nobody')}")
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.hs.request(
            "PUT", f"/profile/{q(self.alice)}/displayname", {"displayname": 5}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/profile/{q(self.alice)}/displayname", {"displayname": "x" * 300}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/profile/{q(self.alice)}/displayname", {}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        status, body = self.hs.request(
            "PUT", f"/profile/{q(self.alice)}/displayname", {"displayname": "x"})
        self.assertEqual((status, body["errcode"]), (401, "M_MISSING_TOKEN"))

    def test_propagation(self) -> None:
        """A new display name is sent as a fresh join event into every joined room, and
        not into rooms the user left."""
        rooms = [self.hs.request("POST", "/createRoom", {}, self.ta)[1]["room_id"]
                 for _ in range(2)]
        left = self.hs.request("POST", "/createRoom", {}, self.ta)[1]["room_id"]
        self.hs.request("POST", f"/rooms/{q(left)}/leave", {}, self.ta)
        self.hs.request("PUT", f"/profile/{q(self.alice)}/displayname",
                        {"displayname": "Alice A."}, self.ta)
        for room in rooms:
            status, member = self.hs.request(
                "GET", f"/rooms/{q(room)}/state/m.room.member/{q(self.alice)}", None, self.ta)
            self.assertEqual((status, member["membership"], member["displayname"]),
                             (200, "join", "Alice A."))
        status, member = self.hs.request(
            "GET", f"/rooms/{q(left)}/state/m.room.member/{q(self.alice)}", None, self.ta)
        self.assertEqual((member["membership"], member.get("displayname")), ("leave", None))
        # Setting the same name again sends nothing new.
        room = rooms[0]
        before = self.hs.request("GET", f"/rooms/{q(room)}/messages?dir=b&limit=1", None,
                                 self.ta)[1]["chunk"][0]["event_id"]
        self.hs.request("PUT", f"/profile/{q(self.alice)}/displayname",
                        {"displayname": "Alice A."}, self.ta)
        after = self.hs.request("GET", f"/rooms/{q(room)}/messages?dir=b&limit=1", None,
                                self.ta)[1]["chunk"][0]["event_id"]
        self.assertEqual(before, after)
