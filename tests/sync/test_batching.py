"""Sync's batched reads and caches: the client-event cache (and its invalidation by
redaction), the state-group cache, the many-rooms visibility check and timelines that need
more than the first page read for all rooms."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import Event
from ruma.protocol.json import decode_json
from ruma.rooms.serialize import serialize_event
from ruma.rooms.visibility import filter_events_for_user
from ruma.sync.event_cache import ClientEventCache, from_stored_pdu, to_cached
from ruma.sync.handler import SyncHandler
from ruma.sync.visibility import visible_event_ids
from tests.sync.helpers import make_sync_homeserver

ONE = {"room": {"timeline": {"limit": 1}}}


def q(s: str) -> str:
    return quote(s, safe="")


def state_event(room: dict[str, Any], etype: str, state_key: str = "") -> dict[str, Any]:
    found = [
        e for e in room["state"]["events"] if (e["type"], e["state_key"]) == (etype, state_key)
    ]
    assert len(found) == 1, found
    return found[0]


def without_ages(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_ages(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [without_ages(v) for v in value]
    return value


class EventCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.atok = self.hs.register("alice")
        self.room = self.hs.create_room(self.alice, name="Room", topic="secret topic")

    @property
    def handler(self) -> SyncHandler:
        return self.hs.services.sync

    def redact(self, event_id: str, txn: str) -> str:
        status, body = self.hs.request(
            "PUT", f"/rooms/{q(self.room)}/redact/{q(event_id)}/{txn}", {}, token=self.atok
        )
        self.assertEqual(status, 200, body)
        return str(body["event_id"])

    def test_redacted_state_event_is_not_served_from_the_cache(self) -> None:
        """A state event cached by one initial sync is served pruned, with redacted_because,
        once redacted."""
        self.hs.send(self.alice, self.room, "before")
        first = self.hs.sync(self.atok, filter=ONE)["rooms"]["join"][self.room]
        topic = state_event(first, "m.room.topic")
        self.assertEqual(topic["content"]["topic"], "secret topic")
        self.assertGreater(len(self.handler._client_events), 0)
        redaction = self.redact(topic["event_id"], "r1")
        self.hs.send(self.alice, self.room, "after")
        second = self.hs.sync(self.atok, filter=ONE)["rooms"]["join"][self.room]
        redacted = state_event(second, "m.room.topic")
        self.assertEqual(redacted["event_id"], topic["event_id"])
        self.assertEqual(redacted["content"], {})
        self.assertEqual(redacted["unsigned"]["redacted_because"]["event_id"], redaction)

    def test_redacted_timeline_event_is_not_served_from_the_cache(self) -> None:
        message = self.hs.send(self.alice, self.room, "oops")
        first = self.hs.sync(self.atok)["rooms"]["join"][self.room]
        served = [e for e in first["timeline"]["events"] if e["event_id"] == message]
        self.assertEqual(served[0]["content"]["body"], "oops")
        self.redact(message, "r2")
        second = self.hs.sync(self.atok)["rooms"]["join"][self.room]
        served = [e for e in second["timeline"]["events"] if e["event_id"] == message]
        self.assertEqual(served[0]["content"], {})
        self.assertIn("redacted_because", served[0]["unsigned"])

    def test_cached_and_fresh_responses_agree(self) -> None:
        """A second initial sync (from the caches) equals the first but for ages, including
        the sender's transaction ID and prev_content."""
        status, _ = self.hs.request(
            "PUT",
            f"/rooms/{q(self.room)}/send/m.room.message/t1",
            {"msgtype": "m.text", "body": "mine"},
            token=self.atok,
        )
        self.assertEqual(status, 200)
        self.hs.request(
            "PUT", f"/rooms/{q(self.room)}/state/m.room.topic", {"topic": "new"}, token=self.atok
        )
        for i in range(12):
            self.hs.send(self.alice, self.room, f"m{i}")
        first = self.hs.sync(self.atok)
        self.hs.clock.advance(5)
        second = self.hs.sync(self.atok)
        self.assertEqual(
            without_ages(first["rooms"]["join"]), without_ages(second["rooms"]["join"])
        )
        room = second["rooms"]["join"][self.room]
        topic = state_event(room, "m.room.topic")
        self.assertEqual(topic["unsigned"]["prev_content"]["topic"], "secret topic")
        self.assertGreaterEqual(topic["unsigned"]["age"], 5000)
        flt = {"room": {"timeline": {"limit": 20}}}
        timeline = self.hs.sync(self.atok, filter=flt)["rooms"]["join"][self.room]["timeline"]
        mine = [e for e in timeline["events"] if e["content"].get("body") == "mine"]
        self.assertEqual(mine[0]["unsigned"]["transaction_id"], "t1")

    def test_entries_from_stored_json_match_parsed_events(self) -> None:
        """Entries made straight from the stored JSON (state events, with prev_content)
        equal those made from parsed, served events; redacted ones are refused."""
        bob, _ = self.hs.register("bob")
        self.hs.run(self.hs.rooms.membership.invite(self.alice, self.room, bob))
        self.hs.run(self.hs.rooms.membership.join(bob, self.room))
        self.hs.request(
            "PUT", f"/rooms/{q(self.room)}/state/m.room.topic", {"topic": "t2"}, token=self.atok
        )
        store = self.hs.services.events
        sync_store = self.hs.services.sync_store
        ids = list(self.hs.run(store.get_current_state_ids(self.room)).values())
        stamps = self.hs.run(sync_store.get_event_stamps(ids))
        replaced = [r for _, r, _ in stamps.values() if r is not None]
        self.assertGreaterEqual(len(replaced), 2)  # bob's join, the second topic
        texts = self.hs.run(sync_store.get_event_json(ids + replaced))
        served = self.hs.run(store.get_events(ids))
        for event_id in ids:
            redacted_by, replaces, _ = stamps[event_id]
            prev = decode_json(texts[replaces][1], strict=False) if replaces else None
            room_id, text = texts[event_id]
            entry = from_stored_pdu(
                event_id, room_id, decode_json(text, strict=False), (redacted_by, replaces), prev
            )
            assert entry is not None
            self.assertEqual(entry, to_cached(served[event_id], (redacted_by, replaces)))
        topic_id = self.hs.run(store.get_current_state_keys(self.room, [("m.room.topic", "")]))
        pdu = decode_json(texts[topic_id[("m.room.topic", "")]][1], strict=False)
        self.assertIsNone(from_stored_pdu("$x", self.room, pdu, ("$redaction", None), None))

    def test_cache_unit(self) -> None:
        """A stale stamp drops the entry; redacted entries are not kept; the size is bounded;
        render is serialize_event without room_id."""
        event = self.hs.run(self.hs.services.events.get_event(self.hs.send(self.alice, self.room)))
        assert isinstance(event, Event)
        cache = ClientEventCache(size=2)
        entry = to_cached(event, (None, None))
        cache.put(entry)
        self.assertIs(cache.get(event.event_id, (None, None)), entry)
        self.assertIsNone(cache.get(event.event_id, ("$redaction", None)))
        self.assertIsNone(cache.get(event.event_id, (None, None)))  # dropped when stale
        cache.put(to_cached(event, ("$redaction", None)))
        self.assertEqual(len(cache), 0)
        self.assertEqual(
            entry.render(event.origin_server_ts + 7),
            serialize_event(event, now=event.origin_server_ts + 7, include_room_id=False),
        )
        others = [
            self.hs.run(self.hs.services.events.get_event(self.hs.send(self.alice, self.room)))
            for _ in range(3)
        ]
        for other in others:
            cache.put(to_cached(other, (None, None)))
        self.assertEqual(len(cache), 2)
        self.assertIsNone(cache.get(others[0].event_id, (None, None)))


class ManyRoomsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.atok = self.hs.register("alice")
        self.bob, self.btok = self.hs.register("bob")

    def test_timelines_beyond_the_first_page(self) -> None:
        """With a types filter that the first page read for all rooms cannot satisfy, each
        room continues page by page: the right events, limited and prev_batch."""
        busy = self.hs.create_room(self.alice)
        quiet = self.hs.create_room(self.alice)
        self.hs.send(self.alice, busy, "old")
        self.hs.send(self.alice, busy, "older?")
        for i in range(45):
            self.hs.request(
                "PUT",
                f"/rooms/{q(busy)}/state/m.room.topic",
                {"topic": f"t{i}"},
                token=self.atok,
            )
        self.hs.send(self.alice, quiet, "q")
        flt = {"room": {"timeline": {"types": ["m.room.message"], "limit": 1}}}
        rooms = self.hs.sync(self.atok, filter=flt)["rooms"]["join"]
        busy_timeline = rooms[busy]["timeline"]
        self.assertEqual([e["content"]["body"] for e in busy_timeline["events"]], ["older?"])
        self.assertTrue(busy_timeline["limited"])
        # prev_batch continues just before the picked event.
        status, page = self.hs.request(
            "GET",
            f"/rooms/{q(busy)}/messages?dir=b&limit=1&from={busy_timeline['prev_batch']}"
            "&filter=" + q('{"types":["m.room.message"]}'),
            token=self.atok,
        )
        self.assertEqual(status, 200)
        self.assertEqual([e["content"]["body"] for e in page["chunk"]], ["old"])
        self.assertEqual([e["content"]["body"] for e in rooms[quiet]["timeline"]["events"]], ["q"])
        # The state is the state before the picked event: no topic yet.
        types = {e["type"] for e in rooms[busy]["state"]["events"]}
        self.assertIn("m.room.create", types)
        self.assertNotIn("m.room.topic", types)

    def test_summaries_of_several_rooms(self) -> None:
        rooms = [self.hs.create_room(self.alice, preset="public_chat") for _ in range(3)]
        carol, _ = self.hs.register("carol")
        self.hs.run(self.hs.rooms.membership.join(self.bob, rooms[0]))
        self.hs.run(self.hs.rooms.membership.join(carol, rooms[0]))
        self.hs.run(self.hs.rooms.membership.join(carol, rooms[1]))
        body = self.hs.sync(self.atok)["rooms"]["join"]
        self.assertEqual(body[rooms[0]]["summary"]["m.heroes"], [self.bob, carol])
        self.assertEqual(body[rooms[0]]["summary"]["m.joined_member_count"], 3)
        self.assertEqual(body[rooms[1]]["summary"]["m.heroes"], [carol])
        self.assertEqual(body[rooms[2]]["summary"]["m.heroes"], [])
        self.assertEqual(body[rooms[2]]["summary"]["m.joined_member_count"], 1)

    def test_visibility_agrees_with_the_rooms_rules(self) -> None:
        """visible_event_ids judges events of several rooms as filter_events_for_user does,
        for every history visibility and membership history."""
        carol, _ = self.hs.register("carol")
        rooms = []
        for setting in ("joined", "invited", "shared", "world_readable"):
            room = self.hs.create_room(self.alice, preset="public_chat")
            self.hs.request(
                "PUT",
                f"/rooms/{q(room)}/state/m.room.history_visibility",
                {"history_visibility": setting},
                token=self.atok,
            )
            self.hs.send(self.alice, room, "before")
            self.hs.run(self.hs.rooms.membership.invite(self.alice, room, self.bob))
            self.hs.send(self.alice, room, "invited")
            self.hs.run(self.hs.rooms.membership.join(self.bob, room))
            self.hs.send(self.alice, room, "joined")
            self.hs.run(self.hs.rooms.membership.join(carol, room))
            self.hs.run(self.hs.rooms.membership.leave(carol, room))
            self.hs.send(self.alice, room, "after carol")
            rooms.append(room)
        store = self.hs.services.events
        events: list[Event] = []
        for room in rooms:
            page = self.hs.run(
                store.get_room_events(room, from_pos=0, to_pos=10**9, limit=100, backwards=False)
            )
            events.extend(e for _, e in page)
        sync_store = self.hs.services.sync_store
        for user in (self.alice, self.bob, carol, "@nobody:test"):
            expected = {
                e.event_id for e in self.hs.run(filter_events_for_user(store, user, events))
            }
            got = self.hs.run(visible_event_ids(store, sync_store, user, events))
            self.assertEqual(got, expected, user)
            # The same with every state group at hand (no key reads).
            full = {
                g: self.hs.run(store.state.get_state_group(g))
                for pair in self.hs.run(
                    store.get_state_groups_for_events(e.event_id for e in events)
                ).values()
                for g in pair
            }
            got = self.hs.run(visible_event_ids(store, sync_store, user, events, full.get))
            self.assertEqual(got, expected, user)
        self.assertLess(
            len(self.hs.run(visible_event_ids(store, sync_store, carol, events))), len(events)
        )
