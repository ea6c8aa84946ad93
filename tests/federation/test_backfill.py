"""/messages on a room joined late fetches the older history from the room's other
servers (backfill), validates it, stores it before everything we had, and serves it."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.storage.database import Engine
from tests.federation.rooms_fixtures import Federation, q


class BackfillContract(SynchronousTestCase):
    engine = Engine.SQLITE

    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        for i in range(30):
            self.fed.send_text("a.test", self.alice_tok, self.room, f"old {i}", f"t{i}")
        self.fed.ok("b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok)
        self.fed.settle()

    def page(self, token: str | None, limit: int = 10) -> Any:
        path = f"/rooms/{q(self.room)}/messages?dir=b&limit={limit}"
        if token is not None:
            path += f"&from={q(token)}"
        return self.fed.ok("b.test", "GET", path, None, self.bob_tok)

    def test_paginating_back_fetches_all_history(self) -> None:
        """Paging back from the join returns all 30 older messages newest first, then the
        room's creation events, ending with the create event and no further token."""
        seen: list[dict[str, Any]] = []
        token = None
        for _ in range(20):
            out = self.page(token)
            seen.extend(out["chunk"])
            token = out.get("end")
            if token is None:
                break
        self.assertIsNone(token)
        bodies = [e["content"]["body"] for e in seen if e["type"] == "m.room.message"]
        self.assertEqual(bodies, [f"old {i}" for i in reversed(range(30))])
        self.assertEqual(seen[0]["state_key"], self.bob)
        self.assertEqual(seen[-1]["type"], "m.room.create")
        ids = [e["event_id"] for e in seen]
        self.assertEqual(len(ids), len(set(ids)))

    def test_backfilled_events_match_the_origin(self) -> None:
        """The history b.test serves is the same events a.test holds, in the same order."""
        out = self.page(None, limit=50)
        b_ids = [e["event_id"] for e in out["chunk"]]
        a_out = self.fed.ok(
            "a.test", "GET", f"/rooms/{q(self.room)}/messages?dir=b&limit=50", None,
            self.alice_tok,
        )
        a_ids = [e["event_id"] for e in a_out["chunk"]]
        self.assertEqual(b_ids[: len(a_ids)], a_ids[: len(b_ids)])

    def test_backfilled_history_is_not_news(self) -> None:
        """Backfilled events are not announced (they have no stream rows): Bob's
        incremental /sync after the backfill has no old messages."""
        first = self.fed.sync("b.test", self.bob_tok)
        self.page(None, limit=40)
        self.fed.settle()
        out = self.fed.ok(
            "b.test", "GET", f"/sync?timeout=0&since={first['next_batch']}", None, self.bob_tok
        )
        room = out.get("rooms", {}).get("join", {}).get(self.room, {})
        old = [
            e for e in room.get("timeline", {}).get("events", [])
            if e["content"].get("body", "").startswith("old")
        ]
        self.assertEqual(old, [])

    def test_server_down_gives_what_we_have(self) -> None:
        """With the other server unreachable /messages answers what b.test holds."""
        self.fed.agent.down.add("a.test")
        out = self.page(None)
        self.assertEqual([e["type"] for e in out["chunk"]], ["m.room.member"])
        self.assertNotIn("end", out)

    def test_invalid_backfill_is_dropped(self) -> None:
        """Events in a backfill answer that fail the signature check are not stored."""
        from ruma.federation.event_fetcher import EventFetcher

        b = self.fed["b.test"]
        wiring = self.fed.wiring["b.test"]
        real: EventFetcher = wiring.backfiller._fetcher  # type: ignore[attr-defined]

        class Tampering:
            checker = real.checker

            async def backfill(self, *a: Any, **kw: Any) -> Any:
                events = await real.backfill(*a, **kw)
                pdus = []
                for ev in events:
                    pdu = ev.pdu()
                    if ev.type == "m.room.message":
                        sigs = pdu["signatures"]["a.test"]
                        sigs[next(iter(sigs))] = "A" * 86
                    pdus.append(pdu)
                return await real.check_pdus(pdus, a[1], a[0], room_id=a[2])

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        wiring.backfiller._fetcher = Tampering()  # type: ignore[attr-defined,assignment]
        out = self.page(None, limit=50)
        self.assertEqual([e for e in out["chunk"] if e["type"] == "m.room.message"], [])
        store = b.hs.rooms.store  # type: ignore[union-attr]
        a = self.fed["a.test"]
        a_msgs = a.run(a.hs.rooms.store.get_room_events(  # type: ignore[union-attr]
            self.room, from_pos=0, to_pos=10**9, limit=100, backwards=False))
        ids = [e.event_id for _, e in a_msgs if e.type == "m.room.message"]
        self.assertEqual(b.run(store.have_events(ids)), set())


class BackfillSQLiteTests(BackfillContract):
    engine = Engine.SQLITE


class BackfillPostgresTests(BackfillContract):
    engine = Engine.POSTGRES


del BackfillContract
