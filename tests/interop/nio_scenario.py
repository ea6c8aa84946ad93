"""A two-user chat scenario with matrix-nio, run as a script against a homeserver.

    python tests/interop/nio_scenario.py http://127.0.0.1:PORT [--timeout SECONDS]

It registers two users through the client API and drives a small conversation: profile,
room creation, invite, join, messages seen through /sync and /messages, typing and read
receipts, and profile propagation into the room. It prints one JSON object on stdout:
``{"ok": bool, "steps": [{"name", "ok", "detail"}, ...]}``. The core steps (register,
create, invite, join, send) stop the scenario on failure; the later checks are independent
and each one is recorded, so one missing feature does not hide the others.

It runs in its own process so nio's asyncio loop never meets the test's Twisted reactor,
and every wait is a long-poll bounded by a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    MessageDirection,
    RoomMessagesResponse,
    SyncResponse,
)

PASSWORD = "correct horse battery staple"


class StepFailed(Exception):
    pass


class Scenario:
    def __init__(self, homeserver: str, deadline: float) -> None:
        self.homeserver = homeserver
        self.deadline = deadline
        self.steps: list[dict[str, Any]] = []
        suffix = secrets.token_hex(3)
        self.alice_name = f"alice{suffix}"
        self.bob_name = f"bob{suffix}"
        config = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
        self.alice = AsyncClient(homeserver, self.alice_name, config=config)
        self.bob = AsyncClient(homeserver, self.bob_name, config=config)
        self.room_id = ""
        self.sent: list[str] = []

    def record(self, name: str, ok: bool, detail: Any = None) -> None:
        self.steps.append({"name": name, "ok": ok, "detail": detail})
        status = "ok" if ok else "FAILED"
        print(f"[nio] {name}: {status} {detail if detail is not None else ''}", file=sys.stderr)

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]], core: bool) -> Any:
        try:
            detail = await fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            detail = f"{type(e).__name__}: {e}"
            if not isinstance(e, StepFailed):
                detail += "\n" + traceback.format_exc(limit=3)
            self.record(name, False, detail)
            if core:
                raise StepFailed(name) from None
            return None
        self.record(name, True, detail)
        return detail

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def sync_until(
        self,
        client: AsyncClient,
        predicate: Callable[[SyncResponse], bool],
        what: str,
        timeout: float = 15.0,
    ) -> SyncResponse:
        """Incremental long-poll syncs until ``predicate`` holds for one response."""
        end = min(time.monotonic() + timeout, self.deadline)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise StepFailed(f"timed out waiting for {what} in /sync")
            poll_ms = int(max(0.0, min(left, 2.0)) * 1000)
            response = await client.sync(timeout=poll_ms, since=client.next_batch)
            check(response, f"sync while waiting for {what}")
            assert isinstance(response, SyncResponse)
            if predicate(response):
                return response

    async def run(self) -> None:
        try:
            await self.core()
        except StepFailed:
            return
        await self.step("messages seen through incremental /sync", self.messages_via_sync, False)
        await self.step("messages seen through /messages", self.messages_via_pagination, False)
        await self.step("room name and topic seen by the invitee", self.name_and_topic, False)
        await self.step(
            "a fresh limited /sync, then /messages from its prev_batch", self.gap_fill, False
        )
        await self.step("typing notification seen by the other user", self.typing, False)
        await self.step("read receipt seen by the other user", self.receipts, False)
        await self.step("display name change propagated to the room", self.profile_change, False)
        await self.step("bob leaves; both /syncs show it", self.leave, False)

    async def core(self) -> None:
        async def register(client: AsyncClient, name: str) -> str:
            response = await client.register(name, PASSWORD, device_name="nio interop")
            check(response, f"register {name}")
            return str(client.user_id)

        await self.step("register alice", lambda: register(self.alice, self.alice_name), True)
        await self.step("register bob", lambda: register(self.bob, self.bob_name), True)

        async def initial_sync() -> str:
            for client in (self.alice, self.bob):
                check(await client.sync(timeout=0), f"initial sync of {client.user_id}")
            return f"alice next_batch={self.alice.next_batch!r}"

        await self.step("initial /sync for both", initial_sync, True)

        async def set_profile() -> dict[str, Any]:
            check(await self.alice.set_displayname("Alice Interop"), "set displayname")
            check(await self.alice.set_avatar("mxc://example.org/aliceavatar"), "set avatar")
            profile = await self.bob.get_profile(self.alice.user_id)
            check(profile, "get alice's profile as bob")
            got = {"displayname": profile.displayname, "avatar_url": profile.avatar_url}
            expect(got["displayname"] == "Alice Interop", f"displayname read back: {got}")
            expect(got["avatar_url"] == "mxc://example.org/aliceavatar", f"avatar: {got}")
            return got

        # Not a core step: a server without profiles can still run the chat.
        await self.step("set and read display name and avatar", set_profile, False)

        async def create_room() -> str:
            response = await self.alice.room_create(name="Interop room", topic="nio scenario")
            check(response, "createRoom")
            self.room_id = response.room_id
            return self.room_id

        await self.step("alice creates a room", create_room, True)

        async def invite() -> str:
            check(await self.alice.room_invite(self.room_id, self.bob.user_id), "invite")
            await self.sync_until(
                self.bob,
                lambda r: self.room_id in r.rooms.invite,
                "the invite in bob's rooms.invite",
            )
            return "bob sees the invite"

        await self.step("alice invites bob; bob's /sync shows the invite", invite, True)

        async def join() -> str:
            check(await self.bob.join(self.room_id), "join")

            def bob_joined(r: SyncResponse) -> bool:
                room = r.rooms.join.get(self.room_id)
                if room is None:
                    return False
                return any(
                    getattr(e, "state_key", None) == self.bob.user_id
                    and getattr(e, "membership", None) == "join"
                    for e in list(room.timeline.events) + list(room.state)
                )

            await self.sync_until(self.alice, bob_joined, "bob's join in alice's timeline")
            return "alice sees bob join"

        await self.step("bob joins; alice's /sync shows the join", join, True)

        async def send() -> list[str]:
            for i in range(3):
                response = await self.alice.room_send(
                    self.room_id, "m.room.message", {"msgtype": "m.text", "body": f"hello {i}"}
                )
                check(response, f"send message {i}")
                self.sent.append(response.event_id)
            response = await self.bob.room_send(
                self.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"}
            )
            check(response, "bob's reply")
            self.sent.append(response.event_id)
            return self.sent

        await self.step("send four messages (three from alice, one from bob)", send, True)

    async def messages_via_sync(self) -> list[str]:
        seen: list[str] = []

        def got_all(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            if room is not None:
                seen.extend(e.event_id for e in room.timeline.events)
            return all(event_id in seen for event_id in self.sent)

        await self.sync_until(self.bob, got_all, "all four messages in bob's /sync")
        order = [event_id for event_id in seen if event_id in self.sent]
        expect(order == self.sent, f"timeline order {order} != send order {self.sent}")
        return order

    async def messages_via_pagination(self) -> list[str | None]:
        response = await self.bob.room_messages(
            self.room_id, start="", direction=MessageDirection.back, limit=50
        )
        check(response, "/messages backwards")
        assert isinstance(response, RoomMessagesResponse)
        bodies: list[str | None] = [
            getattr(e, "body", None)
            for e in response.chunk
            if getattr(e, "event_id", None) in self.sent
        ]
        expect(
            bodies == ["hi alice", "hello 2", "hello 1", "hello 0"],
            f"newest-first bodies from /messages: {bodies}",
        )
        kinds = [type(e).__name__ for e in response.chunk]
        expect("RoomCreateEvent" in kinds, f"the room's creation is reachable: {kinds}")
        return bodies

    async def name_and_topic(self) -> dict[str, Any]:
        room = self.bob.rooms.get(self.room_id)
        expect(room is not None, "bob's client has no such room")
        assert room is not None
        got = {"name": room.name, "topic": room.topic}
        expect(got == {"name": "Interop room", "topic": "nio scenario"}, f"bob sees {got}")
        return got

    async def gap_fill(self) -> list[str | None]:
        """What a client does on a new device: a short initial sync, then back-paginate."""
        config = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
        fresh = AsyncClient(self.homeserver, self.bob_name, config=config)
        try:
            check(await fresh.login(PASSWORD, device_name="nio second device"), "login")
            response = await fresh.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 2}}})
            check(response, "limited initial sync")
            assert isinstance(response, SyncResponse)
            room = response.rooms.join.get(self.room_id)
            expect(room is not None, "the room is not in the new device's initial sync")
            assert room is not None
            timeline = room.timeline
            ids = [e.event_id for e in timeline.events]
            expect(len(ids) == 2, f"timeline limit 2 gave {len(ids)} events")
            expect(timeline.limited, "a 2-event window on a longer room is not marked limited")
            expect(bool(timeline.prev_batch), "no prev_batch on a limited timeline")
            older: list[str] = []
            token = timeline.prev_batch
            for _ in range(10):
                page = await fresh.room_messages(
                    self.room_id, start=token, direction=MessageDirection.back, limit=5
                )
                check(page, "/messages from prev_batch")
                assert isinstance(page, RoomMessagesResponse)
                older += [e.event_id for e in page.chunk]
                if not page.chunk or not page.end or page.end == token:
                    break
                token = page.end
            overlap = set(ids) & set(older)
            expect(not overlap, f"/messages from prev_batch repeats timeline events {overlap}")
            whole = list(reversed(older)) + ids
            mine = [e for e in whole if e in self.sent]
            expect(mine == self.sent, f"timeline + history gives {mine}, sent {self.sent}")
            return [str(len(older)), "events before the window"]
        finally:
            await fresh.close()

    async def leave(self) -> str:
        check(await self.bob.room_leave(self.room_id), "leave")

        def alice_sees_leave(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            return room is not None and any(
                getattr(e, "state_key", None) == self.bob.user_id
                and getattr(e, "membership", None) == "leave"
                for e in list(room.timeline.events) + list(room.state)
            )

        await self.sync_until(self.alice, alice_sees_leave, "bob's leave in alice's timeline")
        await self.sync_until(
            self.bob, lambda r: self.room_id in r.rooms.leave, "the room in bob's rooms.leave"
        )
        return "left"

    async def typing(self) -> list[str]:
        check(await self.alice.room_typing(self.room_id, True, timeout=10_000), "typing on")

        def alice_typing(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            if room is None:
                return False
            for e in room.ephemeral:
                if type(e).__name__ == "TypingNoticeEvent" and self.alice.user_id in e.users:
                    return True
            return False

        await self.sync_until(self.bob, alice_typing, "alice typing in bob's ephemeral")
        check(await self.alice.room_typing(self.room_id, False), "typing off")

        def nobody_typing(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            if room is None:
                return False
            return any(
                type(e).__name__ == "TypingNoticeEvent" and self.alice.user_id not in e.users
                for e in room.ephemeral
            )

        await self.sync_until(self.bob, nobody_typing, "alice stopping typing")
        return ["typing seen", "stop seen"]

    async def receipts(self) -> str:
        last = self.sent[-1]
        check(await self.alice.update_receipt_marker(self.room_id, last), "POST receipt")

        def bob_sees_receipt(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            if room is None:
                return False
            for e in room.ephemeral:
                for receipt in getattr(e, "receipts", []) or []:
                    if receipt.event_id == last and receipt.user_id == self.alice.user_id:
                        return True
            return False

        await self.sync_until(self.bob, bob_sees_receipt, "alice's read receipt")
        check(
            await self.bob.room_read_markers(self.room_id, fully_read_event=last, read_event=last),
            "POST read_markers",
        )

        def alice_sees_receipt(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            if room is None:
                return False
            for e in room.ephemeral:
                for receipt in getattr(e, "receipts", []) or []:
                    if receipt.event_id == last and receipt.user_id == self.bob.user_id:
                        return True
            return False

        await self.sync_until(self.alice, alice_sees_receipt, "bob's read receipt")
        return last

    async def profile_change(self) -> str:
        check(await self.alice.set_displayname("Alice Renamed"), "rename")

        def renamed(r: SyncResponse) -> bool:
            room = r.rooms.join.get(self.room_id)
            if room is None:
                return False
            return any(
                getattr(e, "state_key", None) == self.alice.user_id
                and getattr(e, "content", {}).get("displayname") == "Alice Renamed"
                for e in list(room.timeline.events) + list(room.state)
            )

        await self.sync_until(self.bob, renamed, "alice's new m.room.member displayname")
        name = self.bob.rooms[self.room_id].user_name(self.alice.user_id)
        expect(name == "Alice Renamed", f"nio's room member name is {name!r}")
        return str(name)

    async def close(self) -> None:
        for client in (self.alice, self.bob):
            await client.close()


def check(response: Any, what: str) -> None:
    if isinstance(response, ErrorResponse):
        raise StepFailed(
            f"{what}: {type(response).__name__} errcode={response.status_code!r} "
            f"message={response.message!r}"
        )


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("homeserver")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    scenario = Scenario(args.homeserver, time.monotonic() + args.timeout)
    try:
        await asyncio.wait_for(scenario.run(), args.timeout + 5)
    except TimeoutError:
        scenario.record("scenario finished within its deadline", False, f"{args.timeout}s")
    finally:
        await scenario.close()
    ok = bool(scenario.steps) and all(step["ok"] for step in scenario.steps)
    print(json.dumps({"ok": ok, "steps": scenario.steps}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
