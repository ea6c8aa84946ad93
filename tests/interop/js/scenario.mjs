// A two-user chat scenario with matrix-js-sdk (the SDK under Element), without crypto and
// with the default in-memory store, run by Ruma's interop tests against a homeserver on
// loopback:
//
//   node scenario.mjs BASE_URL ALICE_LOCALPART ALICE_PASSWORD BOB_LOCALPART BOB_PASSWORD [TIMEOUT_S]
//
// Both users must exist. Each logs in, starts a syncing client and waits for PREPARED; then
// alice sets her profile, creates a room and invites bob, bob joins, they exchange messages
// (seen through the live timeline and through /messages), the room's name and topic reach
// bob, a new device with a 2-event initial sync scrolls back to every message, typing, read
// receipts, alice's rename reaches bob's member list, and bob leaves. The SDK's own logging goes to stderr; stdout carries one
// JSON object: {"ok": bool, "steps": [{"name", "ok", "detail"}]}. Core steps stop the
// scenario when they fail; the later checks are independent. Every wait has a deadline.

import * as sdk from "matrix-js-sdk";

import { StepFailed, expect, scenario } from "./harness.mjs";

const { users, clients, step, until, login, waitPrepared, run } = scenario({
    script: "scenario.mjs",
    tag: "js",
    deviceName: "matrix-js-sdk interop",
    timeoutS: 90,
    waitMs: 15000,
    pollMs: 50,
});
const { aliceName, alicePassword, bobName, bobPassword } = users;

let alice, bob, roomId;
const sent = [];

async function core() {
    await step("alice and bob log in", async () => {
        alice = await login(aliceName, alicePassword);
        bob = await login(bobName, bobPassword);
        clients.push(alice, bob);
        return [alice.getUserId(), bob.getUserId()];
    }, true);

    await step("both clients start and reach PREPARED", async () => {
        for (const client of clients) {
            await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
        }
        for (const client of clients) await waitPrepared(client);
        return clients.map((c) => c.getSyncState());
    }, true);

    await step("set and read display name and avatar", async () => {
        await alice.setDisplayName("Alice JS");
        await alice.setAvatarUrl("mxc://example.org/alicejs");
        const profile = await bob.getProfileInfo(alice.getUserId());
        expect(profile.displayname === "Alice JS", `displayname read back: ${JSON.stringify(profile)}`);
        expect(profile.avatar_url === "mxc://example.org/alicejs", `avatar read back: ${JSON.stringify(profile)}`);
        return profile;
    }, false);

    await step("alice creates a room", async () => {
        const response = await alice.createRoom({ name: "JS interop room", topic: "matrix-js-sdk scenario" });
        roomId = response.room_id;
        await until("the new room in alice's client", () => alice.getRoom(roomId)?.getMyMembership() === "join");
        return roomId;
    }, true);

    await step("alice invites bob; bob's client shows the invite", async () => {
        await alice.invite(roomId, bob.getUserId());
        await until("the invite in bob's client", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
        return "invited";
    }, true);

    await step("bob joins; alice's client shows the join", async () => {
        await bob.joinRoom(roomId);
        await until("bob's join in alice's client",
            () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
        return "joined";
    }, true);

    await step("alice sends three messages", async () => {
        for (let i = 0; i < 3; i++) {
            const { event_id } = await alice.sendTextMessage(roomId, `hello ${i}`);
            sent.push(event_id);
        }
        return [...sent];
    }, true);
}

function timelineIds(client) {
    return client.getRoom(roomId)?.getLiveTimeline().getEvents().map((e) => e.getId()) ?? [];
}

async function checks() {
    await step("alice's messages arrive in bob's live timeline in order", async () => {
        const mine = [...sent];
        await until("alice's three messages in bob's timeline", () => mine.every((id) => timelineIds(bob).includes(id)));
        const order = timelineIds(bob).filter((id) => mine.includes(id));
        expect(JSON.stringify(order) === JSON.stringify(mine), `timeline order ${order} != send order ${mine}`);
        return order;
    }, false);

    const replied = await step("bob replies", async () => {
        const { event_id } = await bob.sendTextMessage(roomId, "hi alice");
        sent.push(event_id);
        return event_id;
    }, false);

    if (replied) {
        await step("bob's reply arrives in alice's live timeline after her messages", async () => {
            await until("bob's reply in alice's timeline", () => timelineIds(alice).includes(replied));
            const order = timelineIds(alice).filter((id) => sent.includes(id));
            expect(JSON.stringify(order) === JSON.stringify(sent), `timeline order ${order} != ${sent}`);
            return order;
        }, false);
    }
    await step("messages seen through /messages", async () => {
        const response = await bob.createMessagesRequest(roomId, null, 50, sdk.Direction.Backward);
        const bodies = response.chunk.filter((e) => sent.includes(e.event_id)).map((e) => e.content?.body);
        expect(JSON.stringify(bodies) === JSON.stringify(["hi alice", "hello 2", "hello 1", "hello 0"]),
            `newest-first bodies from /messages: ${JSON.stringify(bodies)}`);
        return bodies;
    }, false);

    await step("room name and topic seen by the invitee", async () => {
        const room = bob.getRoom(roomId);
        const topic = room?.currentState.getStateEvents("m.room.topic", "")?.getContent().topic;
        const got = { name: room?.name, topic };
        expect(got.name === "JS interop room" && got.topic === "matrix-js-sdk scenario",
            `bob sees ${JSON.stringify(got)}`);
        return got;
    }, false);

    await step("a new device with a 2-event initial sync scrolls back to every message", async () => {
        // What Element does on a fresh login: a short window from /sync, then back-paginate
        // from the timeline's prev_batch through /messages.
        const fresh = await login(bobName, bobPassword);
        clients.push(fresh);
        await fresh.startClient({ initialSyncLimit: 2, lazyLoadMembers: true });
        await waitPrepared(fresh);
        const room = await until("the room in the new device's client", () => fresh.getRoom(roomId));
        const ids = () => room.getLiveTimeline().getEvents().map((e) => e.getId());
        const window = ids().filter((id) => sent.includes(id));
        expect(window.length <= 2, `a 2-event initial sync showed ${window.length} messages`);
        for (let i = 0; i < 10 && !sent.every((id) => ids().includes(id)); i++) {
            await fresh.scrollback(room, 5);
        }
        const order = ids().filter((id) => sent.includes(id));
        expect(JSON.stringify(order) === JSON.stringify(sent), `after scrollback: ${order}, sent ${sent}`);
        const unique = new Set(ids());
        expect(unique.size === ids().length, "scrollback duplicated events in the timeline");
        fresh.stopClient();
        return order;
    }, false);

    await step("typing notification seen by the other user", async () => {
        await alice.sendTyping(roomId, true, 10000);
        const member = () => bob.getRoom(roomId)?.getMember(alice.getUserId());
        await until("alice typing in bob's client", () => member()?.typing === true);
        await alice.sendTyping(roomId, false, 0);
        await until("alice no longer typing in bob's client", () => member()?.typing === false);
        return "typing on and off seen";
    }, false);

    await step("read receipt seen by the other user", async () => {
        const last = sent[sent.length - 1];
        const event = await until("the last message in alice's client",
            () => alice.getRoom(roomId)?.findEventById(last));
        await alice.sendReadReceipt(event, sdk.ReceiptType.Read, true);
        const room = bob.getRoom(roomId);
        try {
            await until("alice's receipt in bob's client", () => room?.getEventReadUpTo(alice.getUserId()) === last);
        } catch (err) {
            throw new StepFailed(`${err.message}; bob sees alice read up to ${room?.getEventReadUpTo(alice.getUserId())}, receipts on it: ${JSON.stringify(room?.getReceiptsForEvent(room.findEventById(last)))}`);
        }
        return last;
    }, false);

    await step("display name change propagated to the room", async () => {
        await alice.setDisplayName("Alice JS Renamed");
        await until("alice's new name in bob's member list",
            () => bob.getRoom(roomId)?.getMember(alice.getUserId())?.name === "Alice JS Renamed");
        return "Alice JS Renamed";
    }, false);

    await step("bob leaves; alice sees it and bob's client moves the room to leave", async () => {
        await bob.leave(roomId);
        await until("bob's leave in alice's client",
            () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "leave");
        await until("the room as left in bob's client", () => bob.getRoom(roomId)?.getMyMembership() === "leave");
        return "left";
    }, false);
}

run(async () => {
    await core();
    await checks();
});
