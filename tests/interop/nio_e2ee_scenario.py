"""Device keys with matrix-nio's end-to-end encryption, run as a script against a homeserver.

    python tests/interop/nio_e2ee_scenario.py http://127.0.0.1:PORT [--timeout SECONDS]

Two users register through the client API with nio's encryption enabled (its olm account
in a temporary store). Each uploads its device keys and one-time keys (``/keys/upload``);
alice queries bob's devices (``/keys/query``) and checks bob's device keys are exactly the
ones bob's own olm account holds (so the server relayed them unaltered, signature included),
then marks the device verified; she claims one of bob's one-time keys (``/keys/claim``),
which nio checks is signed by that device before starting an olm session; the count the
server reports for bob drops by one. Finally alice sends a message to an encrypted room and
bob's nio decrypts it. It prints one JSON object on stdout: ``{"ok": bool, "steps": [...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    RoomMessageText,
    SyncResponse,
)

PASSWORD = "correct horse battery staple"


class StepFailed(Exception):
    pass


def check(response: Any, what: str) -> None:
    if isinstance(response, ErrorResponse):
        raise StepFailed(
            f"{what}: {type(response).__name__} errcode={response.status_code!r} "
            f"message={response.message!r}"
        )


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


class Scenario:
    def __init__(self, homeserver: str, deadline: float, store: str) -> None:
        self.homeserver = homeserver
        self.deadline = deadline
        self.steps: list[dict[str, Any]] = []
        suffix = secrets.token_hex(3)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        self.alice = AsyncClient(homeserver, f"alice{suffix}", store_path=store, config=config)
        self.bob = AsyncClient(homeserver, f"bob{suffix}", store_path=store, config=config)
        self.room_id = ""

    def record(self, name: str, ok: bool, detail: Any = None) -> None:
        self.steps.append({"name": name, "ok": ok, "detail": detail})
        print(f"[nio-e2ee] {name}: {'ok' if ok else 'FAILED'} {detail or ''}", file=sys.stderr)

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            detail = await fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            detail = f"{type(e).__name__}: {e}"
            if not isinstance(e, StepFailed):
                detail += "\n" + traceback.format_exc(limit=4)
            self.record(name, False, detail)
            raise StepFailed(name) from None
        self.record(name, True, detail)
        return detail

    async def sync(self, client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
        response = await client.sync(timeout=timeout_ms, since=client.next_batch, full_state=False)
        check(response, f"sync of {client.user_id}")
        assert isinstance(response, SyncResponse)
        return response

    async def run(self) -> None:
        try:
            await self.step("register both users with encryption enabled", self.register)
            await self.step("upload device and one-time keys", self.upload)
            await self.step("encrypted room: create, invite, join", self.room)
            await self.step("query bob's device keys and verify them", self.query_and_verify)
            await self.step("claim one of bob's one-time keys", self.claim)
            await self.step("an encrypted message decrypted by the other user", self.message)
        except StepFailed:
            return

    async def register(self) -> list[str]:
        out = []
        for client in (self.alice, self.bob):
            name = client.user
            check(await client.register(name, PASSWORD, device_name="nio e2ee"), f"register {name}")
            expect(client.olm is not None, "nio did not load an olm account")
            out.append(f"{client.user_id} {client.device_id}")
        return out

    async def upload(self) -> dict[str, Any]:
        counts = {}
        for client in (self.alice, self.bob):
            expect(client.should_upload_keys, f"{client.user_id} has no keys to upload")
            response = await client.keys_upload()
            check(response, f"keys/upload of {client.user_id}")
            assert isinstance(response, KeysUploadResponse)
            counts[client.user_id] = response.signed_curve25519_count
            expect(response.signed_curve25519_count > 0, "the server counts no one-time keys")
        self.bob_otks = counts[self.bob.user_id]
        return counts

    async def room(self) -> str:
        response = await self.alice.room_create(
            invite=[self.bob.user_id],
            initial_state=[{
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }],
        )
        check(response, "createRoom")
        self.room_id = response.room_id  # type: ignore[union-attr]
        await self.sync(self.bob)
        check(await self.bob.join(self.room_id), "bob joins")
        for client in (self.alice, self.bob):
            await self.sync(client)
        expect(self.alice.rooms[self.room_id].encrypted, "nio does not see the room encrypted")
        return self.room_id

    async def query_and_verify(self) -> dict[str, str]:
        response = await self.alice.keys_query()
        check(response, "keys/query")
        assert isinstance(response, KeysQueryResponse)
        devices = self.alice.device_store[self.bob.user_id]
        device = devices.get(self.bob.device_id)
        expect(device is not None, f"bob's device {self.bob.device_id} not in {list(devices)}")
        own = self.bob.olm.account.identity_keys  # type: ignore[union-attr]
        expect(device.ed25519 == own["ed25519"], "bob's ed25519 key differs from his own")
        expect(device.curve25519 == own["curve25519"], "bob's curve25519 key differs")
        self.alice.verify_device(device)
        expect(self.alice.olm.is_device_verified(device), "the device is not verified")  # type: ignore[union-attr]
        return {"device": device.id, "ed25519": device.ed25519}

    async def claim(self) -> dict[str, Any]:
        response = await self.alice.keys_claim({self.bob.user_id: [self.bob.device_id]})
        check(response, "keys/claim")
        assert isinstance(response, KeysClaimResponse)
        keys = response.one_time_keys.get(self.bob.user_id, {}).get(self.bob.device_id, {})
        expect(len(keys) == 1, f"claimed {keys}")
        device = self.alice.device_store[self.bob.user_id][self.bob.device_id]
        sessions = self.alice.olm.session_store.get(device.curve25519)  # type: ignore[union-attr]
        expect(bool(sessions), "nio made no olm session from the claimed key")
        sync = await self.sync(self.bob)
        left = sync.device_key_count.signed_curve25519
        expect(left == self.bob_otks - 1, f"bob has {left} one-time keys, not {self.bob_otks - 1}")
        return {"claimed": list(keys), "bob_keys_left": left}

    async def message(self) -> str:
        text = f"encrypted hello {secrets.token_hex(4)}"
        response = await self.alice.room_send(
            self.room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": text},
            ignore_unverified_devices=True,
        )
        check(response, "send encrypted")
        end = min(time.monotonic() + 20, self.deadline)
        while time.monotonic() < end:
            sync = await self.sync(self.bob, 1000)
            room = sync.rooms.join.get(self.room_id)
            for event in room.timeline.events if room else []:
                if isinstance(event, RoomMessageText) and event.body == text:
                    expect(event.decrypted, "the message was not encrypted")
                    return event.event_id
        raise StepFailed("bob never decrypted alice's message")

    async def close(self) -> None:
        for client in (self.alice, self.bob):
            await client.close()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("homeserver")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        scenario = Scenario(args.homeserver, time.monotonic() + args.timeout, store)
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
