"""PUT /rooms/{roomId}/typing/{userId}: state, timeouts on the clock, sync, errors."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


def typing_in(body: dict, room: str) -> list[str] | None:  # type: ignore[type-arg]
    r = body["rooms"]["join"].get(room)
    if r is None:
        return None
    for e in r["ephemeral"]["events"]:
        if e["type"] == "m.typing":
            return list(e["content"]["user_ids"])
    return None


class TypingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.atok = self.hs.register("alice")
        self.bob, self.btok = self.hs.register("bob")
        self.room = self.hs.create_room(self.alice, preset="public_chat")
        self.hs.run(self.hs.rooms.membership.join(self.bob, self.room))

    def put(self, token: str, user: str, body: object, room: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
        return self.hs.request("PUT", f"/rooms/{room or self.room}/typing/{user}", body, token=token)

    def test_typing_in_sync_and_timeout(self) -> None:
        """Typing wakes the other member's long-poll with m.typing; when the timeout expires
        on the clock, the next sync shows nobody typing."""
        first = self.hs.sync(self.btok)
        d = self.hs.start_request("GET", f"/sync?since={first['next_batch']}&timeout=60000", self.btok)
        self.assertEqual(self.put(self.atok, self.alice, {"typing": True, "timeout": 10000})[0], 200)
        self.hs.tick()
        _, body = self.hs.finish(d)
        self.assertEqual(typing_in(body, self.room), [self.alice])
        d2 = self.hs.start_request("GET", f"/sync?since={body['next_batch']}&timeout=60000", self.btok)
        self.hs.clock.advance(10)
        self.hs.tick()
        _, body2 = self.hs.finish(d2)
        self.assertEqual(typing_in(body2, self.room), [])

    def test_refresh_takes_no_position_and_stop(self) -> None:
        """Re-sending typing=true only extends the timeout; typing=false stops at once."""
        self.put(self.atok, self.alice, {"typing": True, "timeout": 10000})
        first = self.hs.sync(self.btok)
        self.hs.clock.advance(8)
        self.put(self.atok, self.alice, {"typing": True, "timeout": 10000})
        self.assertEqual(self.hs.sync(self.btok, since=first["next_batch"])["next_batch"], first["next_batch"])
        self.hs.clock.advance(8)  # 16 s after the first PUT: still typing thanks to the refresh
        self.assertEqual(self.hs.services.typing.typing_users(self.room), [self.alice])
        self.put(self.atok, self.alice, {"typing": False})
        body = self.hs.sync(self.btok, since=first["next_batch"])
        self.assertEqual(typing_in(body, self.room), [])

    def test_initial_sync_shows_current_typing(self) -> None:
        """An initial sync includes who is typing now."""
        self.put(self.btok, self.bob, {"typing": True, "timeout": 30000})
        self.assertEqual(typing_in(self.hs.sync(self.atok), self.room), [self.bob])

    def test_errors(self) -> None:
        """Another user's typing is 403; not in the room 403; missing or bad body 400."""
        status, body = self.put(self.atok, self.bob, {"typing": True})
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        carol, ctok = self.hs.register("carol")
        status, body = self.put(ctok, carol, {"typing": True})
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.put(self.atok, self.alice, {})
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        status, body = self.put(self.atok, self.alice, {"typing": "yes"})
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/rooms/{self.room}/typing/{self.alice}", raw_body=b"{", token=self.atok
        )
        self.assertEqual((status, body["errcode"]), (400, "M_NOT_JSON"))
