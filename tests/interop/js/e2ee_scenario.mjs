// End-to-end encryption with matrix-js-sdk and its Rust crypto (the WebAssembly build of
// matrix-sdk-crypto, as in Element), run by Ruma's interop tests against a homeserver on
// loopback:
//
//   node e2ee_scenario.mjs BASE_URL ALICE_LOCALPART ALICE_PASSWORD BOB_LOCALPART BOB_PASSWORD [TIMEOUT_S]
//
// Both users must exist. Each logs in as a new device, starts the Rust crypto (in memory,
// no IndexedDB) and syncs; the clients upload device and one-time keys. Alice creates an
// encrypted room and invites bob, bob joins; alice sends an encrypted message, which bob's
// client decrypts (olm session from a claimed one-time key, megolm room key over to-device);
// bob answers, alice decrypts; both see the other's device through /keys/query. stdout
// carries one JSON object: {"ok": bool, "steps": [{"name", "ok", "detail"}]}; the SDK's
// logging goes to stderr. Every wait has a deadline.

import * as sdk from "matrix-js-sdk";

import { expect, scenario } from "./harness.mjs";

const { users, clients, step, until, login, waitPrepared, run } = scenario({
    script: "e2ee_scenario.mjs",
    tag: "js-e2ee",
    deviceName: "matrix-js-sdk e2ee interop",
    timeoutS: 120,
    waitMs: 30000,
    pollMs: 100,
});
const { aliceName, alicePassword, bobName, bobPassword } = users;

// The decrypted body of event `eventId` in `client`'s room, once it decrypts.
async function decryptedBody(client, roomId, eventId) {
    return until(`${client.getUserId()} to decrypt ${eventId}`, async () => {
        const event = client.getRoom(roomId)?.findEventById(eventId);
        if (!event) return null;
        await client.decryptEventIfNeeded(event);
        if (event.isDecryptionFailure()) return null;
        if (event.isBeingDecrypted()) return null;
        const content = event.getContent();
        return event.isEncrypted() && event.getType() === "m.room.message" && content?.body
            ? { body: content.body, wireType: event.getWireType() }
            : null;
    }, 45000);
}

let alice, bob, roomId;

async function encryptedChat() {
    await step("alice and bob log in as new devices", async () => {
        alice = await login(aliceName, alicePassword);
        bob = await login(bobName, bobPassword);
        clients.push(alice, bob);
        return [alice.getDeviceId(), bob.getDeviceId()];
    });

    await step("Rust crypto starts and both clients sync", async () => {
        for (const client of clients) {
            await client.initRustCrypto({ useIndexedDB: false });
            await client.startClient({ initialSyncLimit: 20 });
        }
        for (const client of clients) await waitPrepared(client);
        return clients.map((c) => c.getCrypto()?.constructor?.name);
    });

    await step("each device's keys are published and visible to the other user", async () => {
        const seen = [];
        for (const [me, other] of [[alice, bob], [bob, alice]]) {
            const devices = await until(`${me.getUserId()} to see ${other.getUserId()}'s device`, async () => {
                const map = await me.getCrypto().getUserDeviceInfo([other.getUserId()], true);
                const device = map.get(other.getUserId())?.get(other.getDeviceId());
                return device ? device : null;
            });
            expect(devices.getIdentityKey(), "device has no curve25519 identity key");
            seen.push(`${other.getDeviceId()} ed25519 ${devices.getFingerprint()}`);
        }
        return seen;
    });

    await step("alice creates an encrypted room and invites bob; bob joins", async () => {
        const created = await alice.createRoom({
            name: "e2ee interop",
            preset: sdk.Preset.PrivateChat,
            invite: [bob.getUserId()],
            initial_state: [{
                type: "m.room.encryption",
                state_key: "",
                content: { algorithm: "m.megolm.v1.aes-sha2" },
            }],
        });
        roomId = created.room_id;
        await until("bob's invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
        await bob.joinRoom(roomId);
        await until("bob joined in alice's client",
            () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
        await until("the room is encrypted for both",
            async () => (await alice.getCrypto().isEncryptionEnabledInRoom(roomId))
                && (await bob.getCrypto().isEncryptionEnabledInRoom(roomId)));
        return roomId;
    });

    await step("alice sends an encrypted message and bob decrypts it", async () => {
        const text = "hello bob, this is encrypted " + Date.now();
        const { event_id } = await alice.sendMessage(roomId, { msgtype: "m.text", body: text });
        const raw = await bob.fetchRoomEvent(roomId, event_id);
        expect(raw.type === "m.room.encrypted", `the server holds a ${raw.type}, not m.room.encrypted`);
        expect(!JSON.stringify(raw).includes(text), "the server copy contains the plaintext");
        const got = await decryptedBody(bob, roomId, event_id);
        expect(got.body === text, `bob decrypted ${JSON.stringify(got.body)}`);
        return got;
    });

    await step("bob answers encrypted and alice decrypts it", async () => {
        const text = "hi alice, decrypted fine " + Date.now();
        const { event_id } = await bob.sendMessage(roomId, { msgtype: "m.text", body: text });
        const got = await decryptedBody(alice, roomId, event_id);
        expect(got.body === text, `alice decrypted ${JSON.stringify(got.body)}`);
        return got;
    });
}

run(encryptedChat);
