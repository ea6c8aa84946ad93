"""Room aliases and directory visibility through the client API."""

from __future__ import annotations

from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import make_homeserver


def q(s: str) -> str:
    return quote(s, safe="")


class DirectoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")
        self.room = self.hs.request("POST", "/createRoom", {"preset": "public_chat"},
                                    self.ta)[1]["room_id"]

    def test_alias_lifecycle(self) -> None:
        """PUT creates an alias, GET resolves it with servers, /aliases lists it, DELETE by
        its creator removes it; a second PUT of the same alias is 409."""
        alias = "#lobby:test"
        self.assertEqual(self.hs.request("PUT", f"/directory/room/{q(alias)}",
                                         {"room_id": self.room}, self.ta), (200, {}))
        status, body = self.hs.request("PUT", f"/directory/room/{q(alias)}",
                                       {"room_id": self.room}, self.ta)
        self.assertEqual(status, 409)
        self.assertEqual(self.hs.request("GET", f"/directory/room/{q(alias)}"),
                         (200, {"room_id": self.room, "servers": ["test"]}))
        self.assertEqual(self.hs.request("GET", f"/rooms/{q(self.room)}/aliases", None,
                                         self.ta), (200, {"aliases": [alias]}))
        self.assertEqual(self.hs.request("DELETE", f"/directory/room/{q(alias)}", None,
                                         self.ta), (200, {}))
        status, body = self.hs.request("GET", f"/directory/room/{q(alias)}")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_alias_errors(self) -> None:
        """Aliases of other servers, malformed aliases and unknown rooms are refused; only
        the creator or a room moderator may delete; non-members may not list aliases."""
        status, body = self.hs.request("PUT", f"/directory/room/{q('#x:elsewhere')}",
                                       {"room_id": self.room}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.hs.request("PUT", f"/directory/room/{q('nope')}",
                                       {"room_id": self.room}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.hs.request("PUT", f"/directory/room/{q('#x:test')}",
                                       {"room_id": "!unknown:test"}, self.ta)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = self.hs.request("PUT", f"/directory/room/{q('#x:test')}", {}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        self.hs.request("PUT", f"/directory/room/{q('#mine:test')}", {"room_id": self.room},
                        self.ta)
        status, body = self.hs.request("DELETE", f"/directory/room/{q('#mine:test')}", None,
                                       self.tb)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request("GET", f"/rooms/{q(self.room)}/aliases", None, self.tb)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request("GET", f"/directory/room/{q('#far:elsewhere')}")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_visibility(self) -> None:
        """Directory visibility is private by default, set by moderators only."""
        path = f"/directory/list/room/{q(self.room)}"
        self.assertEqual(self.hs.request("GET", path), (200, {"visibility": "private"}))
        status, body = self.hs.request("PUT", path, {"visibility": "public"}, self.tb)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        self.assertEqual(self.hs.request("PUT", path, {"visibility": "public"}, self.ta)[0], 200)
        self.assertEqual(self.hs.request("GET", path), (200, {"visibility": "public"}))
        status, body = self.hs.request("PUT", path, {"visibility": "secret"}, self.ta)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.hs.request("GET", f"/directory/list/room/{q('!x:test')}")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
