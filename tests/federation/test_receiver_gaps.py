"""Receiving events whose prev or auth events we lack: get_missing_events fills a gap, and
a gap too long for it is bridged with the state fetched at its edge (state_ids)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma.storage.database import Engine
from tests.federation.receiver_fixture import Servers, q


class GapTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Servers(self, joins=True)
        self.alice, self.alice_tok = self.s["a.test"].register("alice")
        self.bob, self.bob_tok = self.s["b.test"].register("bob")
        self.room = self.s.create_room("a.test", self.alice_tok)
        self.s.ok("b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok)
        # b.test's messages only reach a.test when a test pushes them.
        self.messages = [
            self.s.ok("b.test", "PUT", f"/rooms/{q(self.room)}/send/m.room.message/{i}",
                      {"msgtype": "m.text", "body": f"m{i}"}, self.bob_tok)["event_id"]
            for i in range(1, 6)
        ]
        self.assertFalse(self.s.stored("a.test", self.messages[0]))

    def push(self, event_id: str, txn: str = "t1") -> dict[str, object]:
        pdu = self.s.run(self.s.store("b.test").get_pdus([event_id]))[event_id]
        status, body = self.s.send_txn("b.test", "a.test", txn, [pdu])
        self.assertEqual(status, 200)
        result: dict[str, object] = body["pdus"]
        return result

    def paths(self, fragment: str) -> list[bytes]:
        return [uri for _, uri in self.s.requests if fragment.encode() in uri]

    def test_gap_filled_with_get_missing_events(self) -> None:
        """Only the last of five messages is pushed: a.test asks b.test for the four it
        lacks and ends up with all five in its timeline, in order."""
        result = self.push(self.messages[-1])
        self.assertEqual(result, {self.messages[-1]: {}})
        self.assertTrue(self.paths("/get_missing_events/"))
        timeline = [e.event_id for e in self.s.timeline("a.test", self.room)]
        self.assertEqual(timeline[-5:], self.messages)
        bodies = self.s.ok("a.test", "GET", f"/rooms/{q(self.room)}/messages?dir=b&limit=5",
                           None, self.alice_tok)["chunk"]
        self.assertEqual([e["content"]["body"] for e in bodies], ["m5", "m4", "m3", "m2", "m1"])

    def test_long_gap_bridged_with_state(self) -> None:
        """get_missing_events limited to 2 events: the oldest fetched one has an unknown
        prev event, so a.test fetches the state there (state_ids) and stores it all anyway;
        the three messages it got are in its timeline, the rest is left as a gap."""
        fed = self.s["a.test"].hs.federation
        assert fed is not None
        fed.gaps.max_events = 2
        fed.gaps.max_hops = 1
        result = self.push(self.messages[-1])
        self.assertEqual(result, {self.messages[-1]: {}})
        self.assertTrue(self.paths("/state_ids/"))
        timeline = [e.event_id for e in self.s.timeline("a.test", self.room)]
        self.assertEqual(timeline[-3:], self.messages[2:])
        self.assertFalse(self.s.stored("a.test", self.messages[0]))
        # Bob is still a member in a.test's current state: the state at the gap was right.
        members = self.s.run(self.s.store("a.test").get_current_members(self.room, "join"))
        self.assertEqual(set(members), {self.alice, self.bob})

    def test_missing_auth_event_is_fetched(self) -> None:
        """Bob changes his display name, then speaks; only the message is pushed. Its auth
        event (the new membership) is fetched, stored, and the message accepted."""
        self.s.ok("b.test", "PUT", f"/profile/{q(self.bob)}/displayname",
                  {"displayname": "Robert"}, self.bob_tok)
        msg = self.s.ok("b.test", "PUT", f"/rooms/{q(self.room)}/send/m.room.message/x",
                        {"msgtype": "m.text", "body": "after rename"}, self.bob_tok)["event_id"]
        result = self.push(msg)
        self.assertEqual(result, {msg: {}})
        member = self.s.run(self.s.store("a.test").get_current_state_event(
            self.room, "m.room.member", self.bob))
        self.assertEqual(member.content.get("displayname"), "Robert")
        self.assertIn(msg, [e.event_id for e in self.s.timeline("a.test", self.room)])

    def test_unreachable_origin_leaves_event_unjudged(self) -> None:
        """If the origin cannot be asked for the missing events and state, the event gets an
        error (it cannot be judged) and is not stored."""
        pdu = self.s.run(self.s.store("b.test").get_pdus([self.messages[-1]]))[self.messages[-1]]
        # a.test can still hear b.test's transaction, but cannot call back.
        fed_a = self.s["a.test"].hs.federation
        assert fed_a is not None

        async def refuse(*args: object, **kw: object) -> object:
            from ruma.federation.event_fetcher import FetchError

            raise FetchError("b.test", "unreachable")

        fed_a.fetcher.get_missing_events = refuse  # type: ignore[method-assign]
        fed_a.fetcher.get_state_ids = refuse  # type: ignore[method-assign]
        status, body = self.s.send_txn("b.test", "a.test", "t1", [pdu])
        self.assertIn("error", body["pdus"][self.messages[-1]])
        self.assertFalse(self.s.stored("a.test", self.messages[-1]))

    def test_copy_arriving_while_processing_gets_the_same_answer(self) -> None:
        """A transaction resent while the first copy is still fetching missing events: the
        copy waits for the first one's answer; the work is done once."""
        pdu = self.s.run(self.s.store("b.test").get_pdus([self.messages[-1]]))[self.messages[-1]]
        client = self.s["b.test"].hs.federation.client  # type: ignore[union-attr]
        body = {"origin": "b.test", "origin_server_ts": 1, "pdus": [pdu.pdu()]}
        path = "/_matrix/federation/v1/send/dup"
        handler = self.s["a.test"].hs.federation.transactions  # type: ignore[union-attr]
        waits: list[object] = []
        real_wait = handler._wait_for

        def counting(key: tuple[str, str]) -> Deferred[dict[str, object]]:
            waits.append(key)
            return real_wait(key)

        handler._wait_for = counting  # type: ignore[method-assign]
        # Hold a.test's call back to b.test until both copies have arrived.
        fetcher = self.s["a.test"].hs.federation.fetcher  # type: ignore[union-attr]
        gate: Deferred[None] = Deferred()
        real_gme = fetcher.get_missing_events

        async def held(*args: Any, **kw: Any) -> Any:
            await gate
            return await real_gme(*args, **kw)

        fetcher.get_missing_events = held  # type: ignore[method-assign]
        first = Deferred.fromCoroutine(client.request("PUT", "a.test", path, body=body))
        second = Deferred.fromCoroutine(client.request("PUT", "a.test", path, body=body))
        for _ in range(20):
            self.s.flush()
        self.assertEqual(len(waits), 2)
        gate.callback(None)
        answers = [self.s.wait(first), self.s.wait(second)]
        self.assertEqual(answers, [{"pdus": {self.messages[-1]: {}}}] * 2)
        self.assertEqual(len(self.paths("/get_missing_events/")), 1)
        # Both requests waited on the one processing (none found a stored answer).
        self.assertEqual(waits, [("b.test", "dup")] * 2)


class GapTestsPostgres(GapTests):
    """The same on PostgreSQL."""

    engine = Engine.POSTGRES
