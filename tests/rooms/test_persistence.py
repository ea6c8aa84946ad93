"""The single persistence path: auth, rejection, soft failure, forks and their resolution,
idempotency, and the per-room linearizer under concurrency."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from ruma.errors import MatrixError
from ruma.protocol.events import Event, auth_types_for_event, build_event
from ruma.protocol.signing import SigningKey, signing_key_from_seed
from ruma.rooms.builder import NewEvent
from ruma.rooms.persistence import EventRejected
from ruma.storage.database import Database
from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine

REMOTE = "remote.test"
EVE = f"@eve:{REMOTE}"


def remote_key() -> SigningKey:
    return signing_key_from_seed("r1", hashlib.sha256(REMOTE.encode()).digest())


class PersistenceContract(RoomsTestMixin):
    def remote_event(
        self,
        room_id: str,
        prev: list[str],
        type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        sender: str = EVE,
        ts_offset: int = 0,
    ) -> Event:
        """An event as a remote server would build it on top of ``prev``."""
        store = self.store
        version = self.run_sync(store.get_room_version(room_id))
        assert version is not None
        state = self.run_sync(self.rooms.writer.state_after_events(version, room_id, prev))[0]
        wanted = auth_types_for_event(version, type, sender, state_key, content)
        ids = self.run_sync(store.state.get_state_group_keys(state.group, wanted))  # type: ignore[arg-type]
        auth = self.run_sync(store.get_pdus(ids.values()))
        prevs = self.run_sync(store.get_pdus(prev))
        return build_event(
            version,
            room_id=room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_events=[prevs[p] for p in prev],
            auth_events=list(auth.values()),
            origin_server_ts=int(self.clock.seconds() * 1000) + ts_offset,
            server_name=REMOTE,
            signing_key=remote_key(),
            event_id_localpart=f"r{len(prev)}{ts_offset}",
        )

    def head(self, room_id: str) -> Any:
        return self.run_sync(self.store.get_room_head(room_id))

    def public_room(self) -> str:
        return self.create_room(preset="public_chat", room_version="10")

    def test_local_event_failing_auth_is_403_and_writes_nothing(self) -> None:
        """A local event the auth rules refuse raises 403 with the rule's reason; the
        room's head and the events table are unchanged."""
        room = self.create_room()
        before = self.head(room)
        d = Deferred.fromCoroutine(
            self.rooms.messages.send_message(self.bob, room, "m.room.message", {"body": "x"}, None)
        )
        err = self.failureResultOf(d, MatrixError).value
        self.assertEqual(err.http_status, 403)
        self.assertIn("not in the room", err.msg)
        self.assertEqual(self.head(room), before)
        count = self.run_sync(self.store.get_room_events(room, from_pos=0, to_pos=10**9,
                                                         limit=1000, backwards=False))
        self.assertNotIn(self.bob, {e.sender for _, e in count})

    def test_persist_is_idempotent(self) -> None:
        """Persisting an event we already hold returns it as already known, unchanged."""
        room = self.create_room()
        event_id = self.send_text(room, self.alice, "hi")
        event = self.run_sync(self.store.get_pdus([event_id]))[event_id]
        again = self.run_sync(self.rooms.writer.persist_event(event))
        self.assertTrue(again.already_known)
        meta = self.run_sync(self.store.get_event_meta([event_id]))[event_id]
        self.assertEqual(again.stream_position, meta.stream_position)

    def test_remote_event_extends_room(self) -> None:
        """An event from another server on top of the room's extremity joins the timeline
        and becomes the only forward extremity."""
        room = self.public_room()
        (tip,) = self.head(room).forward_extremities
        join = self.remote_event(room, [tip], "m.room.member", {"membership": "join"}, EVE)
        result = self.run_sync(self.rooms.writer.persist_event(join))
        self.assertIsNone(result.rejected_reason)
        self.assertFalse(result.soft_failed)
        self.assertIsNotNone(result.stream_position)
        self.assertEqual(self.head(room).forward_extremities, {join.event_id})
        members = self.run_sync(self.store.get_current_members(room))
        self.assertEqual(members[EVE], "join")

    def test_fork_then_merge(self) -> None:
        """A remote state event on an older prev event forks the room: two extremities,
        and the current state is the resolution of both. The next local event merges them."""
        room = self.public_room()
        (tip,) = self.head(room).forward_extremities
        join = self.remote_event(room, [tip], "m.room.member", {"membership": "join"}, EVE)
        self.run_sync(self.rooms.writer.persist_event(join))
        local_topic = self.run_sync(
            self.rooms.messages.set_state(self.alice, room, "m.room.topic", "", {"topic": "A"})
        )
        # Eve renames herself on top of her join, not having seen the topic.
        rename = self.remote_event(
            room, [join.event_id], "m.room.member",
            {"membership": "join", "displayname": "Eve"}, EVE, ts_offset=5,
        )
        result = self.run_sync(self.rooms.writer.persist_event(rename))
        self.assertIsNone(result.rejected_reason)
        self.assertEqual(
            self.head(room).forward_extremities, {local_topic, rename.event_id}
        )
        current = self.run_sync(self.store.get_current_state_ids(room))
        self.assertEqual(current[("m.room.topic", "")], local_topic)
        self.assertEqual(current[("m.room.member", EVE)], rename.event_id)
        # The state after the rename alone lacks the topic: it was resolved in.
        after_rename = self.run_sync(self.store.get_state_ids_for_event(rename.event_id))
        assert after_rename is not None
        self.assertNotIn(("m.room.topic", ""), after_rename)
        # get_state_ids_at follows the room's (resolved) state.
        pos = result.stream_position
        assert pos is not None
        at = self.run_sync(self.store.get_state_ids_at(room, pos))
        self.assertEqual(at, current)
        # A local message merges both branches.
        merged = self.send_text(room, self.alice, "merged")
        event = self.run_sync(self.store.get_pdus([merged]))[merged]
        self.assertEqual(set(event.prev_event_ids), {local_topic, rename.event_id})
        self.assertEqual(self.head(room).forward_extremities, {merged})

    def test_soft_failure(self) -> None:
        """A remote event allowed by the state before it but not by the current state (its
        sender was banned meanwhile) is stored soft-failed: no stream position, not served in
        the timeline, not an extremity."""
        room = self.public_room()
        (tip,) = self.head(room).forward_extremities
        join = self.remote_event(room, [tip], "m.room.member", {"membership": "join"}, EVE)
        self.run_sync(self.rooms.writer.persist_event(join))
        self.run_sync(self.rooms.membership.ban(self.alice, room, EVE, reason="spam"))
        extremities = self.head(room).forward_extremities
        late = self.remote_event(room, [join.event_id], "m.room.message", {"body": "late"})
        result = self.run_sync(self.rooms.writer.persist_event(late))
        self.assertTrue(result.soft_failed)
        self.assertIsNone(result.rejected_reason)
        self.assertIsNone(result.stream_position)
        self.assertEqual(self.head(room).forward_extremities, extremities)
        meta = self.run_sync(self.store.get_event_meta([late.event_id]))[late.event_id]
        self.assertTrue(meta.soft_failed)

    def test_rejected_event(self) -> None:
        """A remote event failing auth against the state before it (a message from a user
        who never joined) is stored as rejected, outside the timeline and the state."""
        room = self.public_room()
        (tip,) = self.head(room).forward_extremities
        bad = self.remote_event(room, [tip], "m.room.message", {"body": "intruder"})
        result = self.run_sync(self.rooms.writer.persist_event(bad))
        self.assertIsNotNone(result.rejected_reason)
        self.assertIsNone(result.stream_position)
        self.assertEqual(self.head(room).forward_extremities, {tip})
        self.assertIsNone(self.run_sync(self.store.get_event(bad.event_id)))
        self.assertIsNotNone(
            self.run_sync(self.store.get_event(bad.event_id, allow_rejected=True))
        )
        # Events citing a rejected event as an auth event are rejected in turn.
        meta = self.run_sync(self.store.get_event_meta([bad.event_id]))[bad.event_id]
        self.assertIn("sender_not_joined", meta.rejected_reason or "")

    def test_outlier_invite_for_local_user(self) -> None:
        """An invite to a room this server is not in, stored as an outlier, becomes the
        invited local user's membership (for sync) without a timeline position."""
        version = self.run_sync(self.store.get_room_version(self.create_room()))
        assert version is not None
        # A remote room: build its create, join and an invite for Bob on the remote server.
        key = remote_key()
        create = build_event(
            version, room_id=None if version.room_id_from_create_event else f"!r:{REMOTE}",
            sender=EVE, type="m.room.create", content={"room_version": version.identifier},
            state_key="", prev_events=[], auth_events=[], origin_server_ts=1,
            server_name=REMOTE, signing_key=key, event_id_localpart="c",
        )
        join = build_event(
            version, room_id=create.room_id, sender=EVE, type="m.room.member",
            content={"membership": "join"}, state_key=EVE, prev_events=[create],
            auth_events=[create], origin_server_ts=2, server_name=REMOTE, signing_key=key,
            event_id_localpart="j",
        )
        invite = build_event(
            version, room_id=create.room_id, sender=EVE, type="m.room.member",
            content={"membership": "invite"}, state_key=self.bob, prev_events=[join],
            auth_events=[create, join], origin_server_ts=3, server_name=REMOTE,
            signing_key=key, event_id_localpart="i",
        )
        from ruma.storage.events import NewRoom

        for ev, new_room in ((create, NewRoom(version, EVE)), (join, None)):
            self.run_sync(self.rooms.writer.persist_event(ev, outlier=True, new_room=new_room))
        result = self.run_sync(self.rooms.writer.persist_event(invite, outlier=True))
        self.assertIsNone(result.stream_position)
        rooms = self.run_sync(self.store.get_rooms_for_local_user(self.bob, ("invite",)))
        self.assertEqual([(r[0], r[1], r[2]) for r in rooms],
                         [(create.room_id, "invite", invite.event_id)])
        # Joining it needs federation: an honest 404 until then.
        d = Deferred.fromCoroutine(self.rooms.membership.join(self.bob, create.room_id))
        self.assertEqual(self.failureResultOf(d, MatrixError).value.http_status, 404)

    def test_rejected_local_raises_event_rejected(self) -> None:
        """persist_event_locked(local=True) raises EventRejected (the seam the builder maps
        to 403) for an event that fails against its auth events."""
        room = self.public_room()
        (tip,) = self.head(room).forward_extremities
        bad = self.remote_event(room, [tip], "m.room.message", {"body": "x"})

        async def go() -> None:
            async with self.rooms.writer.room_lock(room):
                await self.rooms.writer.persist_event_locked(bad, local=True)

        f = self.failureResultOf(Deferred.fromCoroutine(go()), EventRejected)
        self.assertEqual(f.value.rule, "sender_not_joined")
        self.assertEqual(self.run_sync(self.store.get_event_meta([bad.event_id])), {})


class PersistenceSQLiteTests(PersistenceContract, SQLiteEngine):
    pass


class PersistencePostgresTests(PersistenceContract, PostgresEngine):
    pass


class _SlowDatabase(Database):
    """A real database whose every transaction completes on a later reactor turn, as a
    threaded pool's would: concurrent writers interleave at each await."""

    clock: Any

    def run(self, desc: str, func: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d = super().run(desc, func, *args)
        d.addCallback(lambda r: deferLater(self.clock, 0, lambda: r))
        return d


class ConcurrencyTests(RoomsTestMixin, SQLiteEngine):
    def test_twenty_concurrent_sends_make_a_linear_dag(self) -> None:
        """Twenty messages sent at once into one room each extend the previous one: one
        forward extremity, every event has exactly one prev event, and depths are 1 apart."""
        room = self.create_room()
        self.db.__class__ = _SlowDatabase
        self.db.clock = self.clock  # type: ignore[attr-defined]
        sends = [
            Deferred.fromCoroutine(
                self.rooms.sender.send(
                    room, NewEvent("m.room.message", self.alice, {"body": str(i)})
                )
            )
            for i in range(20)
        ]
        done = gatherResults(sends)
        for _ in range(2000):
            if done.called:
                break
            self.clock.advance(0)
        results = self.successResultOf(done)
        self.db.__class__ = Database
        events = [r.event for r in results]
        self.assertEqual(len({e.event_id for e in events}), 20)
        by_depth = sorted(events, key=lambda e: e.depth)
        for earlier, later in zip(by_depth, by_depth[1:], strict=False):
            self.assertEqual(later.prev_event_ids, (earlier.event_id,))
            self.assertEqual(later.depth, earlier.depth + 1)
        self.assertEqual(self.head(room).forward_extremities, {by_depth[-1].event_id})

    def head(self, room_id: str) -> Any:
        return self.run_sync(self.store.get_room_head(room_id))
