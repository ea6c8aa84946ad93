"""/messages keeps offering an ``end`` token while backfill is still bringing history.

Found against a real Synapse (benchmarks/federation.py, a 2,000-member room built with many
concurrent joins): each backfill round brought only part of a page (the room's DAG is
wide), and after the rounds one request allows, /messages answered without ``end``, as if
the room's start had been reached: paginating stopped after 326 of ~3,000 events."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.federation.rooms_fixtures import Federation, q


class BackfillRoundsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        for i in range(30):
            self.fed.send_text("a.test", self.alice_tok, self.room, f"old {i}", f"t{i}")
        self.fed.ok("b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok)
        self.fed.settle()
        # Each backfill round brings at most two events (as a wide DAG does).
        reader = self.fed["b.test"].hs.rooms.reader  # type: ignore[union-attr]
        real = reader.backfill

        class TwoAtATime:
            async def backfill(self, room_id: str, limit: int) -> int:
                return int(await real.backfill(room_id, 2))

        reader.backfill = TwoAtATime()

    def test_small_rounds_still_reach_the_start(self) -> None:
        """Pages of 50 while each round brings two events: every page but the last has an
        ``end`` token, and paging on reaches all 30 messages and the create event."""
        seen: list[dict[str, Any]] = []
        token = None
        for _ in range(40):
            path = f"/rooms/{q(self.room)}/messages?dir=b&limit=50"
            if token is not None:
                path += f"&from={q(token)}"
            out = self.fed.ok("b.test", "GET", path, None, self.bob_tok)
            seen.extend(out["chunk"])
            if "end" not in out:
                break
            token = out["end"]
        bodies = [e["content"].get("body") for e in seen if e["type"] == "m.room.message"]
        self.assertEqual(bodies, [f"old {i}" for i in reversed(range(30))])
        self.assertEqual(seen[-1]["type"], "m.room.create")
