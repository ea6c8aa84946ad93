"""Delivery through outages and restarts: batching, retries with the same transaction ID,
isolation between destinations, catch-up in order and exactly once, and outbound EDUs."""

from __future__ import annotations

from tests.federation.sender_fixtures import SenderTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine


class DeliveryContract(SenderTestMixin):
    def room_with(self, *servers: str) -> str:
        room = self.create_room()
        for server in servers:
            self.remote_join(server, room)
        return room

    def test_backlog_goes_in_transactions_of_at_most_50_pdus(self) -> None:
        """120 messages queued while the peer is down arrive as 3 transactions (50, 50, 20),
        in order, once it is back."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        for i in range(120):
            self.send_text(room, f"m{i}")
        self.pump()
        self.agent.down.discard("a.test")
        self.advance(3600)
        remote = self.remotes["a.test"]
        self.assertEqual([len(r.body["pdus"]) for r in remote.processed], [50, 50, 20])
        self.assertEqual(remote.bodies(), [f"m{i}" for i in range(120)])

    def test_outage_of_50_messages_arrives_in_order_exactly_once(self) -> None:
        """The peer is down while 50 messages are sent (several retries fail), then back:
        all 50 arrive once each, in order, and the retries reused one transaction ID."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        for i in range(50):
            self.send_text(room, f"m{i}")
            self.advance(7)  # the retry timer fires during the outage
        self.assertGreaterEqual(len(self.backoffs), 3)
        self.agent.down.discard("a.test")
        self.advance(3600)
        remote = self.remotes["a.test"]
        self.assertEqual(remote.bodies(), [f"m{i}" for i in range(50)])
        self.assertEqual(len(remote.requests), len(remote.processed))

    def test_peer_is_back_retries_promptly(self) -> None:
        """A destination backing off for a long time retries as soon as the peer contacts
        us, not when its timer would fire."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        self.send_text(room, "one")
        self.pump()
        for _ in range(6):  # grow the backoff to several minutes
            self.advance(self.backoffs[-1][1])
        self.agent.down.discard("a.test")
        self.advance(1)
        self.assertEqual(self.remotes["a.test"].bodies(), [])
        self.sender.peer_is_back("a.test")
        self.pump()
        self.assertEqual(self.remotes["a.test"].bodies(), ["one"])

    def test_retry_reuses_the_transaction_id(self) -> None:
        """A transaction answered with a 500 is sent again with the same ID and body, and
        messages sent meanwhile follow in the next transaction."""
        room = self.room_with("a.test")
        remote = self.remotes["a.test"]
        remote.status = 500
        self.send_text(room, "first")
        self.pump()
        self.send_text(room, "second")
        self.pump()
        remote.status = 200
        self.advance(3600)
        ids = [r.txn_id for r in remote.requests]
        self.assertEqual(ids[0], ids[1])
        self.assertEqual(remote.requests[0].body, remote.requests[1].body)
        self.assertEqual(remote.bodies(), ["first", "second"])
        self.assertEqual(len(set(r.txn_id for r in remote.processed)), 2)

    def test_lost_answer_is_not_a_duplicate(self) -> None:
        """The peer processed a transaction but its answer was lost: the retry carries the
        same ID, so the peer (deduplicating by ID) processes nothing twice."""
        room = self.room_with("a.test")
        remote = self.remotes["a.test"]
        original = remote.render_PUT
        lost: list[str] = []

        def lose_first_answer(request):  # type: ignore[no-untyped-def]
            body = original(request)
            if not lost:
                lost.append(remote.requests[-1].txn_id)
                request.setResponseCode(502)
            return body

        remote.render_PUT = lose_first_answer  # type: ignore[method-assign]
        self.send_text(room, "once")
        self.pump()
        self.advance(3600)
        self.assertEqual([r.txn_id for r in remote.requests], lost * 2)
        self.assertEqual(remote.bodies(), ["once"])

    def test_one_destination_down_never_delays_another(self) -> None:
        """While a.test is down and backing off, b.test gets every message at once."""
        room = self.room_with("a.test", "b.test")
        self.agent.down.add("a.test")
        for i in range(5):
            self.send_text(room, f"m{i}")
            self.pump()
            self.assertEqual(self.remotes["b.test"].bodies(), [f"m{j}" for j in range(i + 1)])
        self.assertEqual(self.remotes["a.test"].processed, [])
        self.assertTrue(all(dest == "a.test" for dest, _ in self.backoffs))
        self.agent.down.discard("a.test")
        self.advance(3600)
        self.assertEqual(self.remotes["a.test"].bodies(), [f"m{i}" for i in range(5)])

    def test_restart_mid_backlog_resumes_without_loss_or_duplicates(self) -> None:
        """A restart (sender rebuilt on the same database) while a transaction is pending
        and more is queued: the pending transaction is sent again with the same ID, then
        the rest, then messages sent after the restart; each message arrives once."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        for i in range(70):
            self.send_text(room, f"m{i}")
        self.pump()
        before = [r.txn_id for r in self.remotes["a.test"].requests]
        self.assertEqual(before, [])  # refused before any HTTP exchange
        pending = self.drive(self.store.get_destination("a.test"))
        assert pending is not None and pending.pending is not None
        self.stop_server()
        self.start_server()
        self.agent.down.discard("a.test")
        self.pump()
        for i in range(70, 75):
            self.send_text(room, f"m{i}")
        self.advance(3600)
        remote = self.remotes["a.test"]
        self.assertEqual(remote.requests[0].txn_id, pending.pending.txn_id)
        self.assertEqual(remote.bodies(), [f"m{i}" for i in range(75)])
        self.assertEqual(len(remote.requests), len(remote.processed))

    def test_events_written_while_the_sender_was_stopped_are_sent(self) -> None:
        """Events persisted while the sender was not running (crash, slow start) are found
        in the stream after its stored position and delivered."""
        room = self.room_with("a.test")
        self.send_text(room, "before")
        self.pump()
        self.drive(self.sender.stop())
        self.send_text(room, "while stopped")
        self.stop_server()
        self.start_server()
        self.send_text(room, "after")
        self.pump()
        self.assertEqual(self.remotes["a.test"].bodies(), ["before", "while stopped", "after"])

    def test_refused_transaction_is_dropped_not_retried_forever(self) -> None:
        """A 400 answer means the peer will never take this transaction: it is dropped
        (logged) and the destination goes on with the next one."""
        room = self.room_with("a.test")
        remote = self.remotes["a.test"]
        remote.status = 400
        self.send_text(room, "refused")
        self.pump()
        remote.status = 200
        self.send_text(room, "next")
        self.pump()
        self.assertEqual(remote.bodies(), ["next"])
        self.assertEqual(self.backoffs, [])

    def test_backoff_state_is_stored(self) -> None:
        """A destination that fails is recorded as down (failures, next retry) and as up
        again once a transaction is delivered."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        self.send_text(room, "x")
        self.pump()
        state = self.drive(self.store.get_destination("a.test"))
        assert state is not None
        self.assertEqual(state.failures, 1)
        self.assertIsNotNone(state.retry_at_ms)
        self.assertIsNotNone(state.down_since_ms)
        self.agent.down.discard("a.test")
        self.advance(3600)
        state = self.drive(self.store.get_destination("a.test"))
        assert state is not None
        self.assertEqual((state.failures, state.retry_at_ms, state.down_since_ms), (0, None, None))
        self.assertIsNone(state.pending)

    # -- EDUs -------------------------------------------------------------------------------

    def test_typing_edus(self) -> None:
        """A local user starting and stopping typing sends m.typing true then false to the
        room's servers; a remote user's typing is not echoed."""
        room = self.room_with("a.test")
        self.drive(self.typing.apply(room, self.alice, True, 30_000))
        self.pump()
        self.drive(self.typing.apply(room, "@bob:a.test", True, 30_000))
        self.pump()
        self.drive(self.typing.apply(room, self.alice, False))
        self.pump()
        self.assertEqual(
            [e["content"] for e in self.remotes["a.test"].edus("m.typing")],
            [
                {"room_id": room, "user_id": self.alice, "typing": True},
                {"room_id": room, "user_id": self.alice, "typing": False},
            ],
        )

    def test_stale_typing_is_not_delivered_after_an_outage(self) -> None:
        """Typing notifications queued during a long outage are dropped, the messages kept."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        self.drive(self.typing.apply(room, self.alice, True, 30_000))
        self.send_text(room, "typed")
        self.pump()
        self.advance(100)  # the typing (and its timeout) are stale by now
        self.agent.down.discard("a.test")
        self.advance(3600)
        self.assertEqual(self.remotes["a.test"].bodies(), ["typed"])
        self.assertEqual(self.remotes["a.test"].edus("m.typing"), [])

    def test_receipt_edus(self) -> None:
        """A local user's public read receipt becomes an m.receipt EDU; private receipts
        stay home."""
        room = self.room_with("a.test")
        event_id = self.send_text(room, "read me")
        self.pump()
        self.drive(self.receipts.set_receipt(room, "m.read.private", self.alice, "", event_id, 5))
        self.drive(self.receipts.set_receipt(room, "m.read", self.alice, "", event_id, 7))
        self.pump()
        self.assertEqual(
            [e["content"] for e in self.remotes["a.test"].edus("m.receipt")],
            [{room: {"m.read": {self.alice: {"event_ids": [event_id], "data": {"ts": 7}}}}}],
        )

    def test_receipts_coalesce_during_an_outage(self) -> None:
        """Of several receipts of one user in a room queued during an outage, only the newest
        is delivered."""
        room = self.room_with("a.test")
        self.agent.down.add("a.test")
        ids = [self.send_text(room, f"m{i}") for i in range(3)]
        for n, event_id in enumerate(ids):
            self.drive(self.receipts.set_receipt(room, "m.read", self.alice, "", event_id, n))
        self.pump()
        self.agent.down.discard("a.test")
        self.advance(3600)
        receipts = self.remotes["a.test"].edus("m.receipt")
        self.assertEqual(len(receipts), 1)
        self.assertEqual(receipts[0]["content"][room]["m.read"][self.alice]["event_ids"], [ids[2]])

    def test_presence_edus(self) -> None:
        """A local user's presence goes to the servers sharing a room with them, once each."""
        room = self.room_with("a.test", "b.test")
        other = self.room_with("b.test")
        self.assertNotEqual(room, other)
        now = int(self.clock.seconds() * 1000)
        self.drive(self.presence.set_presence(self.alice, "online", "hi", now, True))
        self.pump()
        for name in ("a.test", "b.test"):
            pushes = [p for e in self.remotes[name].edus("m.presence") for p in e["content"]["push"]]
            self.assertEqual(len(pushes), 1, name)
            self.assertEqual(pushes[0]["user_id"], self.alice)
            self.assertEqual(pushes[0]["presence"], "online")
            self.assertEqual(pushes[0]["status_msg"], "hi")
        self.assertEqual(self.remotes["c.test"].requests, [])


class DeliverySQLiteTests(DeliveryContract, SQLiteEngine):
    pass


class DeliveryPostgresTests(DeliveryContract, PostgresEngine):
    pass
