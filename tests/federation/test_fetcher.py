"""EventFetcher: every event fetched from another server is checked before it is returned."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.event_fetcher import EventFetcher, FetchError
from ruma.federation.http import FederationError
from ruma.federation.inbound import PDUChecker
from ruma.protocol.room_versions import RoomVersions
from tests.federation.test_receiver_check import KeyTable
from tests.protocol.eventfactory import BOB, MALLORY, standard_room

V = RoomVersions.V10


def q(s: str) -> str:
    return quote(s, safe="")


class CannedRemote:
    """Answers federation GET/POSTs from a table; records what was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.asked: list[tuple[str, str, Any]] = []

    async def get_json(self, destination: str, path: str, **kw: Any) -> Any:
        self.asked.append((destination, path, kw.get("query")))
        answer = self.answers.get(path)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            raise FederationError(destination, "404", 404, {"errcode": "M_NOT_FOUND"})
        return answer

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any:
        self.asked.append((destination, path, body))
        answer = self.answers.get(path)
        if answer is None:
            raise FederationError(destination, "404", 404, {"errcode": "M_NOT_FOUND"})
        return answer


class FetcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.remote = CannedRemote()
        self.fetcher = EventFetcher(self.remote, PDUChecker(KeyTable()))
        self.room = standard_room(V, members=[BOB])
        assert self.room.room_id is not None
        self.room_id: str = self.room.room_id

    def run_(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def test_get_event_checks_and_matches_id(self) -> None:
        """/event returns the checked event; an answer holding another event is an error."""
        ev = self.room.send("m.room.message", BOB, {"body": "hi"})
        other = self.room.send("m.room.message", BOB, {"body": "other"})
        path = f"/_matrix/federation/v1/event/{q(ev.event_id)}"
        self.remote.answers[path] = {"origin": "b.test", "pdus": [ev.pdu()]}
        got = self.run_(self.fetcher.get_event("b.test", V, ev.event_id, room_id=self.room_id))
        self.assertEqual(got.event_id, ev.event_id)
        self.remote.answers[path] = {"origin": "b.test", "pdus": [other.pdu()]}
        d = Deferred.fromCoroutine(self.fetcher.get_event("b.test", V, ev.event_id))
        self.failureResultOf(d, FetchError)

    def test_forged_events_are_dropped_from_lists(self) -> None:
        """get_missing_events: a forged event (sender's server did not sign) is left out."""
        good = self.room.send("m.room.message", BOB, {"body": "ok"})
        forged = self.room.build("m.room.message", MALLORY, {"body": "x"}, server_name="b.test")
        path = f"/_matrix/federation/v1/get_missing_events/{q(self.room_id)}"
        self.remote.answers[path] = {"events": [good.pdu(), forged.pdu(), "junk"]}
        got = self.run_(
            self.fetcher.get_missing_events(
                "b.test", V, self.room_id, earliest_events=[], latest_events=[good.event_id]
            )
        )
        self.assertEqual([e.event_id for e in got], [good.event_id])
        body = self.remote.asked[-1][2]
        self.assertEqual(body["latest_events"], [good.event_id])
        self.assertEqual(body["limit"], 10)

    def test_events_of_other_rooms_are_dropped(self) -> None:
        """An auth chain answer with an event of another room is filtered."""
        other_room = standard_room(V, members=[BOB])
        path = "/_matrix/federation/v1/event_auth/{}/{}".format(
            q(self.room_id), "%24x"
        )
        self.remote.answers[path] = {
            "auth_chain": [self.room.create.pdu(), other_room.create.pdu()]
        }
        got = self.run_(self.fetcher.get_event_auth("b.test", V, self.room_id, "$x"))
        self.assertEqual([e.event_id for e in got], [self.room.create.event_id])

    def test_backfill_is_exempt_from_prev_event_limit(self) -> None:
        """A backfilled event with 25 prev_events is accepted (spec: not validated on it)."""
        prevs = [self.room.build("m.room.message", BOB, {"body": str(i)}) for i in range(25)]
        wide = self.room.build("m.room.message", BOB, {"body": "wide"}, prev_events=prevs)
        path = f"/_matrix/federation/v1/backfill/{q(self.room_id)}"
        self.remote.answers[path] = {"origin": "b.test", "pdus": [wide.pdu()]}
        got = self.run_(self.fetcher.backfill("b.test", V, self.room_id, [wide.event_id], 5))
        self.assertEqual([e.event_id for e in got], [wide.event_id])
        self.assertEqual(self.remote.asked[-1][2], {"v": [wide.event_id], "limit": "5"})

    def test_state_ids_and_errors(self) -> None:
        """state_ids parses both lists; malformed answers and remote errors are FetchError
        carrying the remote's error body (never to be shown to a client as ours)."""
        path = f"/_matrix/federation/v1/state_ids/{q(self.room_id)}"
        self.remote.answers[path] = {"pdu_ids": ["$a"], "auth_chain_ids": ["$b"]}
        got = self.run_(self.fetcher.get_state_ids("b.test", self.room_id, "$e"))
        self.assertEqual((got.pdu_ids, got.auth_chain_ids), (("$a",), ("$b",)))
        self.remote.answers[path] = {"pdu_ids": [1], "auth_chain_ids": []}
        self.failureResultOf(
            Deferred.fromCoroutine(self.fetcher.get_state_ids("b.test", self.room_id, "$e")),
            FetchError,
        )
        del self.remote.answers[path]
        f = self.failureResultOf(
            Deferred.fromCoroutine(self.fetcher.get_state_ids("b.test", self.room_id, "$e")),
            FetchError,
        )
        self.assertEqual(f.value.remote_error, {"errcode": "M_NOT_FOUND"})

    def test_get_events_leaves_out_failures(self) -> None:
        """get_events fetches many; those that fail are simply absent."""
        a = self.room.send("m.room.message", BOB, {"body": "a"})
        self.remote.answers[f"/_matrix/federation/v1/event/{q(a.event_id)}"] = {
            "pdus": [a.pdu()]
        }
        got = self.run_(self.fetcher.get_events("b.test", V, [a.event_id, "$missing"]))
        self.assertEqual(list(got), [a.event_id])
