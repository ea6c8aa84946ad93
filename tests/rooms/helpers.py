"""Room service fixtures: the real room stack on a real database and a MemoryReactorClock."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from ruma.protocol.signing import SigningKey, generate_signing_key
from ruma.rooms.creation import CreateRoomRequest
from ruma.rooms.service import RoomServices
from ruma.storage.database import Database

T = TypeVar("T")

SERVER = "example.test"


@dataclass
class Profile:
    displayname: str | None
    avatar_url: str | None


class DictProfiles:
    """Local users' profiles for the room service tests (the ProfileSource port)."""

    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}

    def add(self, user_id: str, displayname: str | None = None) -> str:
        self.profiles[user_id] = Profile(displayname, None)
        return user_id

    async def get_profile(self, user_id: str) -> Profile | None:
        return self.profiles.get(user_id)

    async def set_displayname(self, user_id: str, displayname: str | None) -> None:
        self.profiles[user_id].displayname = displayname

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        self.profiles[user_id].avatar_url = avatar_url


class RoomsTestMixin:
    """Builds ``self.rooms`` (RoomServices) on ``self.make_db()``; mix in before an engine
    (``SQLiteEngine``/``PostgresEngine``)."""

    make_db: Callable[[], Database]
    successResultOf: Callable[[Deferred[Any]], Any]

    default_room_version = "12"

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.db: Database = self.make_db()
        self.signing_key: SigningKey = generate_signing_key("a1")
        self.profiles = DictProfiles()
        self.rooms = self.build_services()
        self.store = self.rooms.store
        self.alice = self.profiles.add(f"@alice:{SERVER}", "Alice")
        self.bob = self.profiles.add(f"@bob:{SERVER}", "Bob")
        self.carol = self.profiles.add(f"@carol:{SERVER}", "Carol")

    def build_services(self) -> RoomServices:
        return RoomServices.build(
            db=self.db,
            clock=self.clock,
            server_name=SERVER,
            signing_key=self.signing_key,
            profiles=self.profiles,
            default_room_version=self.default_room_version,
        )

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine that finishes without the clock moving."""
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def create_room(self, creator: str | None = None, **kwargs: Any) -> str:
        req = CreateRoomRequest(creator=creator or self.alice, **kwargs)
        room_id, _ = self.run_sync(self.rooms.creator.create_room(req))
        return room_id

    def send_text(self, room_id: str, sender: str, body: str) -> str:
        return self.run_sync(
            self.rooms.messages.send_message(
                sender, room_id, "m.room.message", {"msgtype": "m.text", "body": body}, None
            )
        )
