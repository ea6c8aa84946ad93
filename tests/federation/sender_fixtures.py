"""Fixtures for the federation sender tests: a local homeserver's room stack, the sender on
the real bus and database, and remote servers that record the transactions they receive
(reached through :class:`tests.federation.memory.MemoryFederationAgent`, real HTTP parsing,
``.down`` for outages)."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.server import Request

from ruma.bus import EventBus
from ruma.federation.http import FederationClient
from ruma.federation.sender import Backoff, FederationSender, build_federation_sender
from ruma.federation.xmatrix import XMatrixAuth, parse_authorization
from ruma.handlers.typing import TypingHandler
from ruma.protocol.events import Event
from ruma.protocol.signing import SigningKey, generate_signing_key
from ruma.rooms.builder import LocalEventSender, NewEvent
from ruma.rooms.creation import CreateRoomRequest
from ruma.rooms.service import RoomServices
from ruma.storage.database import Database
from ruma.storage.federation_sender import FederationSenderStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import ReceiptStore
from ruma.storage.sync import SyncStore
from tests.federation.memory import MemoryFederationAgent
from tests.rooms.helpers import DictProfiles
from tests.storage.engines import EngineTestCase

T = TypeVar("T")

LOCAL = "hs.test"
SEND_PREFIX = "/_matrix/federation/v1/send/"


@dataclass(frozen=True)
class Received:
    txn_id: str
    body: dict[str, Any]
    auth: XMatrixAuth


class RecordingServer(Resource):
    """A remote server's ``PUT /send/{txnId}``: records every request, answers like a real
    server (a repeated transaction ID gets the first answer and is not processed again)."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.requests: list[Received] = []
        self.processed: list[Received] = []
        self.status = 200
        self.error_body: dict[str, Any] = {"errcode": "M_UNKNOWN", "error": "boom"}
        # PDU bodies (content.body) to answer with a per-PDU error.
        self.reject_bodies: set[str] = set()

    def render_PUT(self, request: Request) -> bytes:
        path = request.path.decode("ascii")
        assert path.startswith(SEND_PREFIX), path
        txn_id = unquote(path[len(SEND_PREFIX) :])
        assert request.content is not None
        body = json.loads(request.content.read())
        header = request.getHeader(b"Authorization")
        assert header is not None
        received = Received(txn_id, body, parse_authorization(header.decode("utf-8")))
        self.requests.append(received)
        request.setHeader(b"Content-Type", b"application/json")
        if self.status != 200:
            request.setResponseCode(self.status)
            return json.dumps(self.error_body).encode("utf-8")
        if all(r.txn_id != txn_id for r in self.processed):
            self.processed.append(received)
        answer: dict[str, Any] = {}
        for i, pdu in enumerate(body.get("pdus", [])):
            key = pdu.get("event_id", f"pdu{i}")
            text = pdu.get("content", {}).get("body")
            answer[key] = {"error": "rejected"} if text in self.reject_bodies else {}
        return json.dumps({"pdus": answer}).encode("utf-8")

    # -- what arrived -----------------------------------------------------------------------

    def pdus(self) -> list[dict[str, Any]]:
        """PDUs of every processed transaction, in arrival order."""
        return [pdu for r in self.processed for pdu in r.body.get("pdus", [])]

    def bodies(self) -> list[str]:
        """``content.body`` of every processed message PDU, in arrival order."""
        return [
            p["content"]["body"]
            for p in self.pdus()
            if p.get("type") == "m.room.message" and "body" in p.get("content", {})
        ]

    def edus(self, edu_type: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for r in self.processed
            for e in r.body.get("edus", [])
            if edu_type is None or e.get("edu_type") == edu_type
        ]


if TYPE_CHECKING:
    _Base = EngineTestCase
else:
    _Base = object


class SenderTestMixin(_Base):
    """The room stack and the federation sender for ``hs.test`` on one database, with
    remote servers ``a.test``, ``b.test`` and ``c.test`` recording what they receive."""

    remote_names = ("a.test", "b.test", "c.test")

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.key = generate_signing_key("k1")
        self.agent = MemoryFederationAgent()
        self.remotes: dict[str, RecordingServer] = {}
        self.remote_keys: dict[str, SigningKey] = {}
        for name in self.remote_names:
            self.remotes[name] = RecordingServer(name)
            self.agent.add_server(name, self.remotes[name])
            self.remote_keys[name] = generate_signing_key("r1")
        self.jitter = 0.5  # Backoff.random: 0.5 means no jitter
        self.backoffs: list[tuple[str, float]] = []
        self.profiles = DictProfiles()
        self.alice = self.profiles.add(f"@alice:{LOCAL}", "Alice")
        self.start_server()

    def start_server(self) -> None:
        """Build (or rebuild, on the same database: a restart) the homeserver parts."""
        self.db: Database = self.make_db()
        self.rooms = RoomServices.build(
            db=self.db,
            clock=self.clock,
            server_name=LOCAL,
            signing_key=self.key,
            profiles=self.profiles,
            default_room_version="12",
        )
        self.events = self.rooms.store
        self.bus = EventBus(self.clock, self.db)
        self.bus.start()
        self.typing = TypingHandler(self.clock, SyncStore(self.db), self.events)
        self.receipts = ReceiptStore(self.db)
        self.presence = PresenceStore(self.db)
        self.client = FederationClient(self.agent, self.clock, LOCAL, self.key)
        self.sender: FederationSender = build_federation_sender(
            db=self.db,
            bus=self.bus,
            clock=self.clock,
            server_name=LOCAL,
            events=self.events,
            client=self.client,
            typing=self.typing,
            receipts=self.receipts,
            presence=self.presence,
            backoff=Backoff(random=lambda: self.jitter),
        )
        self.sender.on_backoff = lambda dest, delay: self.backoffs.append((dest, delay))
        self.store: FederationSenderStore = self.sender.store
        self.drive(self.sender.start())
        self.pump()

    def stop_server(self) -> None:
        """Stop the sender and the bus as a shutdown would (nothing in memory survives)."""
        d = Deferred.fromCoroutine(self.sender.stop())
        self.pump()
        self.successResultOf(d)
        self.typing.stop()
        self.bus.stop()
        self.db.close()

    # -- driving ----------------------------------------------------------------------------

    def drive(self, coro: Coroutine[Any, Any, T]) -> T:
        d = Deferred.fromCoroutine(coro)
        for _ in range(50):
            if d.called:
                break
            self.pump_once()
        return self.successResultOf(d)

    def pump_once(self) -> None:
        self.clock.advance(0)
        self.agent.flush()

    def pump(self, rounds: int = 200) -> None:
        """Let the bus, the sender and in-memory HTTP run until nothing is left to do now."""
        for _ in range(rounds):
            self.pump_once()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.pump()

    # -- rooms ------------------------------------------------------------------------------

    def create_room(self, **kwargs: Any) -> str:
        req = CreateRoomRequest(creator=self.alice, preset="public_chat", **kwargs)
        room_id, _ = self.drive(self.rooms.creator.create_room(req))
        return room_id

    def send_text(self, room_id: str, body: str, sender: str | None = None) -> str:
        return self.drive(
            self.rooms.messages.send_message(
                sender or self.alice,
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": body},
                None,
            )
        )

    def remote_event(
        self, server: str, room_id: str, new: NewEvent
    ) -> Event:
        """Build ``new`` as ``server`` would (signed with its key) on top of our room head."""

        async def build() -> Event:
            head = await self.events.get_room_head(room_id)
            assert head is not None
            remote = LocalEventSender(
                self.rooms.writer, self.clock, server, self.remote_keys[server]
            )
            return await remote.build(head, new)

        return self.drive(build())

    def remote_join(self, server: str, room_id: str, localpart: str = "bob") -> Event:
        """``@localpart:server`` joins (as if received over federation)."""
        user = f"@{localpart}:{server}"
        event = self.remote_event(
            server, room_id, NewEvent("m.room.member", user, {"membership": "join"}, user)
        )
        self.drive(self.rooms.writer.persist_event(event))
        self.pump()
        return event

    def remote_leave(self, server: str, room_id: str, localpart: str = "bob") -> Event:
        user = f"@{localpart}:{server}"
        event = self.remote_event(
            server, room_id, NewEvent("m.room.member", user, {"membership": "leave"}, user)
        )
        self.drive(self.rooms.writer.persist_event(event))
        self.pump()
        return event
