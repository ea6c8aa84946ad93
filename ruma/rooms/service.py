"""The room service's object graph, built in one place for ``ruma.tap`` and the tests."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from ruma.protocol.signing import SigningKey
from ruma.rooms.aliases import AliasHandler
from ruma.rooms.builder import LocalEventSender
from ruma.rooms.creation import RoomCreator
from ruma.rooms.membership import MembershipHandler, RemoteMembership
from ruma.rooms.persistence import RoomWriter
from ruma.rooms.profile import ProfileHandler, ProfileSource
from ruma.rooms.reading import RoomReader
from ruma.rooms.relations import RelationsHandler
from ruma.rooms.sending import MessageSender
from ruma.storage.database import Database
from ruma.storage.events import EventStore
from ruma.storage.relations import RelationStore
from ruma.storage.rooms import RoomStore
from ruma.storage.state import StateStore

__all__ = ["RoomServices"]


@dataclass(frozen=True, slots=True)
class RoomServices:
    store: EventStore
    rooms: RoomStore
    writer: RoomWriter
    sender: LocalEventSender
    membership: MembershipHandler
    creator: RoomCreator
    messages: MessageSender
    aliases: AliasHandler
    profiles: ProfileHandler
    reader: RoomReader
    relations: RelationsHandler

    @classmethod
    def build(
        cls,
        *,
        db: Database,
        clock: IReactorTime,
        server_name: str,
        signing_key: SigningKey,
        profiles: ProfileSource,
        default_room_version: str,
        remote_membership: RemoteMembership | None = None,
        store: EventStore | None = None,
    ) -> RoomServices:
        if store is None:
            store = EventStore(db, server_name, StateStore(db))
        rooms = RoomStore(db)
        writer = RoomWriter(store, clock)
        sender = LocalEventSender(writer, clock, server_name, signing_key)
        membership = MembershipHandler(sender, store, profiles, remote_membership)
        creator = RoomCreator(
            sender, membership, rooms, profiles, default_room_version=default_room_version
        )
        reader = RoomReader(store, clock)
        return cls(
            store=store,
            rooms=rooms,
            writer=writer,
            sender=sender,
            membership=membership,
            creator=creator,
            messages=MessageSender(sender, store),
            aliases=AliasHandler(rooms, store, server_name),
            profiles=ProfileHandler(profiles, sender, store),
            reader=reader,
            relations=RelationsHandler(store, RelationStore(db), reader, clock),
        )
