"""/sync with rooms: timelines, state, limits, filters, invites, leaves and long-polling."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.rooms.reading import EventFilter as ReadingFilter
from tests.sync.helpers import make_sync_homeserver


def timeline_bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in room["timeline"]["events"]
            if e["type"] == "m.room.message"]


def state_types(room: dict[str, Any], key: str = "state") -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room[key]["events"]}


class SyncRoomTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.atok = self.hs.register("alice")
        self.bob, self.btok = self.hs.register("bob")

    def test_initial_sync_joined_room(self) -> None:
        """A joined room has its latest events in the timeline, the state before them in
        state (no event in both), a summary, unread counts and ephemeral/account_data."""
        room = self.hs.create_room(self.alice, name="Room")
        for i in range(8):
            self.hs.send(self.alice, room, f"m{i}")
        body = self.hs.sync(self.atok)
        r = body["rooms"]["join"][room]
        self.assertEqual(timeline_bodies(r), [f"m{i}" for i in range(8)])
        self.assertEqual(len(r["timeline"]["events"]), 10)
        self.assertTrue(r["timeline"]["limited"])
        timeline_ids = {e["event_id"] for e in r["timeline"]["events"]}
        state_ids = {e["event_id"] for e in r["state"]["events"]}
        self.assertEqual(timeline_ids & state_ids, set())
        all_state = state_types(r) | {
            (e["type"], e["state_key"]) for e in r["timeline"]["events"] if "state_key" in e
        }
        self.assertIn(("m.room.create", ""), all_state)
        self.assertIn(("m.room.member", self.alice), all_state)
        self.assertIn(("m.room.name", ""), all_state)
        self.assertEqual(r["summary"]["m.joined_member_count"], 1)
        self.assertEqual(r["summary"]["m.invited_member_count"], 0)
        self.assertEqual(r["unread_notifications"], {"notification_count": 0, "highlight_count": 0})
        self.assertEqual(r["ephemeral"], {"events": []})
        self.assertNotIn("room_id", r["timeline"]["events"][0])
        self.assertIn("age", r["timeline"]["events"][0]["unsigned"])

    def test_limit_and_prev_batch(self) -> None:
        """timeline.limit gives limited=true and a prev_batch that /messages continues from
        without gap or overlap."""
        room = self.hs.create_room(self.alice)
        for i in range(5):
            self.hs.send(self.alice, room, f"m{i}")
        flt = {"room": {"timeline": {"limit": 2}}}
        r = self.hs.sync(self.atok, filter=flt)["rooms"]["join"][room]
        self.assertEqual(timeline_bodies(r), ["m3", "m4"])
        self.assertTrue(r["timeline"]["limited"])
        page = self.hs.run(
            self.hs.rooms.reader.get_messages(
                self.alice, room, from_token=r["timeline"]["prev_batch"], to_token=None,
                backwards=True, limit=3, event_filter=ReadingFilter(),
            )
        )
        self.assertEqual([e.content.get("body") for e in page.events], ["m2", "m1", "m0"])

    def test_incremental_timeline(self) -> None:
        """An incremental sync has only the new events, limited=false and no state."""
        room = self.hs.create_room(self.alice)
        first = self.hs.sync(self.atok)
        self.hs.send(self.alice, room, "new")
        body = self.hs.sync(self.atok, since=first["next_batch"])
        r = body["rooms"]["join"][room]
        self.assertEqual(timeline_bodies(r), ["new"])
        self.assertFalse(r["timeline"]["limited"])
        self.assertEqual(r["state"]["events"], [])
        self.assertNotIn("summary", r)
        again = self.hs.sync(self.atok, since=body["next_batch"])
        self.assertEqual(again["rooms"]["join"], {})

    def test_incremental_gap_has_state_delta(self) -> None:
        """A gappy incremental sync (more events than the limit) is limited, and a state
        change inside the gap is in the state section."""
        room = self.hs.create_room(self.alice)
        first = self.hs.sync(self.atok)
        self.hs.run(self.hs.rooms.sender.send(room, _state("m.room.topic", self.alice, {"topic": "T"})))
        for i in range(12):
            self.hs.send(self.alice, room, f"m{i}")
        r = self.hs.sync(self.atok, since=first["next_batch"])["rooms"]["join"][room]
        self.assertTrue(r["timeline"]["limited"])
        self.assertEqual(len(r["timeline"]["events"]), 10)
        self.assertEqual(state_types(r), {("m.room.topic", "")})

    def test_types_filter(self) -> None:
        """A timeline types filter keeps only matching events (and the limit counts them)."""
        room = self.hs.create_room(self.alice)
        self.hs.send(self.alice, room, "one")
        flt = {"room": {"timeline": {"types": ["m.room.message"], "limit": 5}}}
        r = self.hs.sync(self.atok, filter=flt)["rooms"]["join"][room]
        self.assertEqual([e["type"] for e in r["timeline"]["events"]], ["m.room.message"])
        self.assertFalse(r["timeline"]["limited"])

    def test_room_filters(self) -> None:
        """room.not_rooms hides a room entirely."""
        room = self.hs.create_room(self.alice)
        body = self.hs.sync(self.atok, filter={"room": {"not_rooms": [room]}})
        self.assertNotIn(room, body["rooms"]["join"])

    def test_lazy_load_members(self) -> None:
        """With lazy_load_members the state has only the member events of timeline senders,
        the heroes and the syncing user, not every member."""
        room = self.hs.create_room(self.alice, preset="public_chat")
        others = [self.hs.register(f"u{i}")[0] for i in range(6)]
        for user in others:
            self.hs.run(self.hs.rooms.membership.join(user, room))
        self.hs.run(self.hs.rooms.membership.join(self.bob, room))
        for i in range(4):
            self.hs.send(self.bob, room, f"b{i}")
        flt = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 3}}}
        r = self.hs.sync(self.atok, filter=flt)["rooms"]["join"][room]
        members = {k for t, k in state_types(r) if t == "m.room.member"}
        heroes = r["summary"]["m.heroes"]
        self.assertEqual(heroes, others[:5])
        self.assertEqual(members, {self.alice, self.bob, *heroes})
        self.assertNotIn(others[5], members)
        self.assertEqual(r["summary"]["m.joined_member_count"], 8)
        # Without lazy loading every member is there.
        r2 = self.hs.sync(self.atok, filter={"room": {"timeline": {"limit": 3}}})["rooms"]["join"][room]
        self.assertIn(others[5], {k for t, k in state_types(r2) if t == "m.room.member"})

    def test_invite_then_join(self) -> None:
        """An invite appears in rooms.invite with stripped state; after joining, the room is
        in rooms.join with its full state."""
        room = self.hs.create_room(self.alice, name="Party")
        first = self.hs.sync(self.btok)
        self.hs.run(self.hs.rooms.membership.invite(self.alice, room, self.bob))
        body = self.hs.sync(self.btok, since=first["next_batch"])
        inv = body["rooms"]["invite"][room]["invite_state"]["events"]
        types = {(e["type"], e["state_key"]) for e in inv}
        self.assertIn(("m.room.member", self.bob), types)
        self.assertIn(("m.room.name", ""), types)
        self.assertIn(("m.room.create", ""), types)
        me = [e for e in inv if e["type"] == "m.room.member" and e["state_key"] == self.bob][0]
        self.assertEqual(me["content"]["membership"], "invite")
        self.assertEqual(set(me), {"type", "state_key", "content", "sender"})

        self.hs.run(self.hs.rooms.membership.join(self.bob, room))
        body2 = self.hs.sync(self.btok, since=body["next_batch"])
        r = body2["rooms"]["join"][room]
        everything = state_types(r) | {
            (e["type"], e["state_key"]) for e in r["timeline"]["events"] if "state_key" in e
        }
        self.assertIn(("m.room.create", ""), everything)
        self.assertIn(("m.room.power_levels", ""), everything)
        self.assertEqual(r["summary"]["m.joined_member_count"], 2)
        self.assertNotIn(room, body2["rooms"]["invite"])

    def test_kick_goes_to_leave(self) -> None:
        """A kicked user gets the room in rooms.leave with the timeline up to the kick, and
        nothing sent after it."""
        room = self.hs.create_room(self.alice, preset="public_chat")
        self.hs.run(self.hs.rooms.membership.join(self.bob, room))
        first = self.hs.sync(self.btok)
        self.hs.send(self.alice, room, "before")
        self.hs.run(self.hs.rooms.membership.kick(self.alice, room, self.bob, reason="bye"))
        self.hs.send(self.alice, room, "after")
        body = self.hs.sync(self.btok, since=first["next_batch"])
        self.assertNotIn(room, body["rooms"]["join"])
        r = body["rooms"]["leave"][room]
        self.assertEqual(timeline_bodies(r), ["before"])
        last = r["timeline"]["events"][-1]
        self.assertEqual((last["type"], last["state_key"]), ("m.room.member", self.bob))
        self.assertEqual(last["content"]["membership"], "leave")
        # include_leave brings it back in an initial sync; without it, it is absent.
        self.assertNotIn(room, self.hs.sync(self.btok)["rooms"]["leave"])
        again = self.hs.sync(self.btok, filter={"room": {"include_leave": True}})
        self.assertIn(room, again["rooms"]["leave"])
        self.assertEqual(timeline_bodies(again["rooms"]["leave"][room]), ["before"])

    def test_ban_goes_to_leave(self) -> None:
        """A ban is a leave section too."""
        room = self.hs.create_room(self.alice, preset="public_chat")
        self.hs.run(self.hs.rooms.membership.join(self.bob, room))
        first = self.hs.sync(self.btok)
        self.hs.run(self.hs.rooms.membership.ban(self.alice, room, self.bob, reason=None))
        r = self.hs.sync(self.btok, since=first["next_batch"])["rooms"]["leave"][room]
        self.assertEqual(r["timeline"]["events"][-1]["content"]["membership"], "ban")

    def test_long_poll_woken_by_message(self) -> None:
        """A long-poll is answered on the turn after a message in one of the user's rooms,
        and not by a message in a room they are not in."""
        room = self.hs.create_room(self.alice, preset="public_chat")
        other = self.hs.create_room(self.bob)
        self.hs.run(self.hs.rooms.membership.join(self.bob, room))
        first = self.hs.sync(self.atok)
        d = self.hs.start_request(
            "GET", f"/sync?since={first['next_batch']}&timeout=30000", self.atok
        )
        self.hs.send(self.bob, other, "elsewhere")
        self.hs.tick()
        self.assertNoResult(d)
        self.hs.send(self.bob, room, "hello alice")
        self.hs.tick()
        status, body = self.hs.finish(d)
        self.assertEqual(status, 200)
        self.assertEqual(timeline_bodies(body["rooms"]["join"][room]), ["hello alice"])
        self.assertNotIn(other, body["rooms"]["join"])

    def test_long_poll_woken_by_invite(self) -> None:
        """An invite wakes the invitee's long-poll even though they are not in the room."""
        room = self.hs.create_room(self.alice)
        first = self.hs.sync(self.btok)
        d = self.hs.start_request(
            "GET", f"/sync?since={first['next_batch']}&timeout=30000", self.btok
        )
        self.hs.run(self.hs.rooms.membership.invite(self.alice, room, self.bob))
        self.hs.tick()
        _, body = self.hs.finish(d)
        self.assertIn(room, body["rooms"]["invite"])

    def test_transaction_id_for_sender_device(self) -> None:
        """Only the sending device sees unsigned.transaction_id."""
        room = self.hs.create_room(self.alice)
        first = self.hs.sync(self.atok)
        status, _ = self.hs.request(
            "PUT", f"/rooms/{room}/send/m.room.message/txn1", {"msgtype": "m.text", "body": "x"},
            token=self.atok,
        )
        if status == 404:
            self.skipTest("room send endpoint not wired yet")
        r = self.hs.sync(self.atok, since=first["next_batch"])["rooms"]["join"][room]
        self.assertEqual(r["timeline"]["events"][-1]["unsigned"]["transaction_id"], "txn1")

    def test_use_state_after(self) -> None:
        """With use_state_after the room has state_after (state at the end of the timeline,
        timeline state events included) instead of state."""
        room = self.hs.create_room(self.alice, name="N")
        first = self.hs.sync(self.atok)
        self.hs.run(self.hs.rooms.sender.send(room, _state("m.room.topic", self.alice, {"topic": "T"})))
        body = self.hs.sync(
            self.atok, since=first["next_batch"], **{"org.matrix.msc4222.use_state_after": True}
        )
        r = body["rooms"]["join"][room]
        self.assertNotIn("state", r)
        self.assertEqual(state_types(r, "org.matrix.msc4222.state_after"), {("m.room.topic", "")})

    def test_event_fields(self) -> None:
        """event_fields trims every event."""
        room = self.hs.create_room(self.alice)
        self.hs.send(self.alice, room, "x")
        r = self.hs.sync(self.atok, filter={"event_fields": ["type", "content.body"]})
        ev = r["rooms"]["join"][room]["timeline"]["events"][-1]
        self.assertEqual(ev, {"type": "m.room.message", "content": {"body": "x"}})

    def test_full_state(self) -> None:
        """full_state=true with a since token returns the full state again."""
        room = self.hs.create_room(self.alice)
        first = self.hs.sync(self.atok)
        self.hs.send(self.alice, room, "x")
        r = self.hs.sync(self.atok, since=first["next_batch"], full_state=True)["rooms"]["join"][room]
        self.assertIn(("m.room.create", ""), state_types(r))
        self.assertEqual(timeline_bodies(r), ["x"])


def _state(etype: str, sender: str, content: dict[str, Any]) -> Any:
    from ruma.rooms.builder import NewEvent

    return NewEvent(etype, sender, content, state_key="")
