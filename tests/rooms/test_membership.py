"""Membership in the service: restricted joins authorised by a local member."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ruma.errors import MatrixError
from ruma.rooms.creation import InitialState
from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import SQLiteEngine


class RestrictedJoinTests(RoomsTestMixin, SQLiteEngine):
    def test_restricted_join(self) -> None:
        """A user joined to a room of the allow list joins a restricted room, the join
        naming a local member who may invite; anyone else is refused (403)."""
        space = self.create_room(preset="public_chat")
        room = self.create_room(
            room_version="10",
            initial_state=[InitialState("m.room.join_rules", "", {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership", "room_id": space}],
            })],
        )
        d = Deferred.fromCoroutine(self.rooms.membership.join(self.bob, room))
        self.assertEqual(self.failureResultOf(d, MatrixError).value.http_status, 403)
        self.run_sync(self.rooms.membership.join(self.bob, space))
        self.run_sync(self.rooms.membership.join(self.bob, room))
        member = self.run_sync(self.store.get_current_state_event(room, "m.room.member",
                                                                  self.bob))
        assert member is not None
        self.assertEqual(member.membership, "join")
        self.assertEqual(member.content["join_authorised_via_users_server"], self.alice)
