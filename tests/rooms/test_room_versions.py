"""Every room version 1-12: createRoom, send, state and redaction work, and every stored PDU
is a valid, correctly hashed and signed event of its version as ruma.protocol sees it."""

from __future__ import annotations

from ruma.protocol.auth import check_auth, check_auth_events
from ruma.protocol.events import Event, check_content_hash, verify_event_signatures
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS
from ruma.protocol.signing import VerifyKey
from tests.rooms.helpers import SERVER, RoomsTestMixin
from tests.storage.engines import SQLiteEngine


class RoomVersionTests(RoomsTestMixin, SQLiteEngine):
    def check_version(self, version_id: str) -> None:
        room = self.create_room(
            room_version=version_id, name="Room", topic="Topic", invite=[self.bob]
        )
        self.run_sync(self.rooms.membership.join(self.bob, room))
        msg = self.send_text(room, self.bob, "hello")
        state_id = self.run_sync(
            self.rooms.messages.set_state(self.alice, room, "m.room.name", "", {"name": "New"})
        )
        redaction = self.run_sync(self.rooms.messages.redact(self.alice, room, msg, "oops", None))

        version = KNOWN_ROOM_VERSIONS[version_id]
        self.assertEqual(self.run_sync(self.store.get_room_version(room)), version)
        create = self.run_sync(self.store.get_current_state_event(room, "m.room.create", ""))
        assert create is not None
        self.assertEqual(create.content["room_version"], version_id)
        if version.room_id_from_create_event:
            self.assertEqual(room, "!" + create.event_id[1:])
            self.assertNotIn("creator", create.content)
        elif version.implicit_room_creator:
            self.assertNotIn("creator", create.content)
        else:
            self.assertEqual(create.content["creator"], self.alice)

        # The state and the redaction took effect.
        name = self.run_sync(self.store.get_current_state_event(room, "m.room.name", ""))
        assert name is not None
        self.assertEqual((name.event_id, name.content["name"]), (state_id, "New"))
        served = self.run_sync(self.store.get_event(msg))
        assert served is not None
        self.assertEqual(dict(served.content), {})
        self.assertEqual(served.unsigned["redacted_because"]["event_id"], redaction)
        red = self.run_sync(self.store.get_pdus([redaction]))[redaction]
        self.assertEqual(red.redacts, msg)

        # Every stored PDU re-parses, has a valid hash and our signature, and passes auth.
        rows = self.run_sync(
            self.store.get_room_events(room, from_pos=0, to_pos=10**12, limit=1000,
                                       backwards=False)
        )
        ids = [e.event_id for _, e in rows]
        pdus = self.run_sync(self.store.get_pdus(ids))
        verify_key = self.signing_key.verify_key

        def key_for(server: str, key_id: str) -> VerifyKey | None:
            return verify_key if (server, key_id) == (SERVER, self.signing_key.key_id) else None

        for event_id in ids:
            event = pdus[event_id]
            again = Event.from_pdu(event.pdu(), version)
            self.assertEqual(again.event_id, event_id)
            self.assertTrue(check_content_hash(event.pdu(), version), event_id)
            verify_event_signatures(event, key_for)
            auth = self.run_sync(self.store.get_pdus(event.auth_event_ids))
            create_event = None if event.type == "m.room.create" else create
            auth_map = check_auth_events(event, auth, create_event=create_event)
            check_auth(event, auth_map)
        # A linear DAG: each event's prev is the one before it.
        for earlier, later in zip(ids, ids[1:], strict=False):
            self.assertEqual(pdus[later].prev_event_ids, (earlier,))


def _make(version_id: str) -> object:
    def test(self: RoomVersionTests) -> None:
        self.check_version(version_id)

    test.__doc__ = (
        f"Room version {version_id}: createRoom, join, send, state and redaction work and "
        "every stored PDU is a valid signed event that passes the auth rules."
    )
    return test


for _v in KNOWN_ROOM_VERSIONS:
    setattr(RoomVersionTests, f"test_room_version_{_v}", _make(_v))
