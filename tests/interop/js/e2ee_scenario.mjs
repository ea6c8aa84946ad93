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

for (const level of ["log", "info", "debug", "warn", "trace"]) {
    console[level] = (...args) => console.error(...args);
}

const [baseUrl, aliceName, alicePassword, bobName, bobPassword, timeoutArg] = process.argv.slice(2);
if (!bobPassword) {
    process.stderr.write("usage: node e2ee_scenario.mjs BASE_URL ALICE PASS BOB PASS [TIMEOUT_S]\n");
    process.exit(2);
}
const deadline = Date.now() + 1000 * Number(timeoutArg || 120);
const steps = [];

class StepFailed extends Error {}

function describe(err) {
    if (err instanceof StepFailed) return err.message;
    if (err && err.errcode) {
        const where = err.url ? ` from ${new URL(err.url).pathname}` : "";
        return `HTTP ${err.httpStatus} ${err.errcode}${where}: ${err.data?.error ?? ""}`;
    }
    return `${err?.name ?? "Error"}: ${err?.message ?? err}\n${(err?.stack ?? "").split("\n").slice(1, 4).join("\n")}`;
}

async function step(name, fn) {
    try {
        const detail = await fn();
        steps.push({ name, ok: true, detail: detail ?? null });
        process.stderr.write(`[js-e2ee] ${name}: ok\n`);
        return detail;
    } catch (err) {
        steps.push({ name, ok: false, detail: describe(err) });
        process.stderr.write(`[js-e2ee] ${name}: FAILED ${describe(err)}\n`);
        throw new StepFailed(name);
    }
}

function expect(condition, message) {
    if (!condition) throw new StepFailed(message);
}

async function until(what, fn, timeoutMs = 30000) {
    const end = Math.min(Date.now() + timeoutMs, deadline);
    for (;;) {
        const value = await fn();
        if (value) return value;
        if (Date.now() >= end) throw new StepFailed(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

async function login(user, password) {
    const anon = sdk.createClient({ baseUrl });
    const response = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: "matrix-js-sdk e2ee interop",
    });
    return sdk.createClient({
        baseUrl,
        accessToken: response.access_token,
        userId: response.user_id,
        deviceId: response.device_id,
        pendingEventOrdering: sdk.PendingEventOrdering.Detached,
    });
}

async function waitPrepared(client) {
    await until(`${client.getUserId()} to reach sync state PREPARED`, () => {
        const state = client.getSyncState();
        if (state === "ERROR") {
            const err = client.getSyncStateData()?.error;
            throw new StepFailed(`sync state ERROR: ${err ? describe(err) : "unknown"}`);
        }
        return state === "PREPARED" || state === "SYNCING";
    });
}

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

const clients = [];
let alice, bob, roomId;

async function scenario() {
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

async function main() {
    const overall = new Promise((_, reject) =>
        setTimeout(() => reject(new StepFailed("scenario deadline passed")), Math.max(0, deadline - Date.now()) + 5000).unref());
    try {
        await Promise.race([scenario(), overall]);
    } catch (err) {
        if (!(err instanceof StepFailed) || err.message === "scenario deadline passed") {
            steps.push({ name: "scenario finished", ok: false, detail: describe(err) });
        }
    } finally {
        for (const client of clients) client.stopClient();
    }
    const ok = steps.length > 0 && steps.every((s) => s.ok);
    process.stdout.write(JSON.stringify({ ok, steps }) + "\n");
    process.exit(0);
}

main();
