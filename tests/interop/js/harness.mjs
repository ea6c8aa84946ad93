// What Ruma's matrix-js-sdk scenarios share: their command line, steps that report to one
// JSON result, deadline-bounded waits, password login and waiting for the first sync.
//
// A scenario calls `scenario({...})` once and gets these helpers bound to its arguments;
// `run(body)` runs the body under the overall deadline, stops every client in `clients`,
// and writes {"ok": bool, "steps": [{"name", "ok", "detail"}]} as the only line on stdout.

import * as sdk from "matrix-js-sdk";

// The SDK logs through console.*: keep stdout for the result alone.
for (const level of ["log", "info", "debug", "warn", "trace"]) {
    console[level] = (...args) => console.error(...args);
}

export class StepFailed extends Error {}

export function describe(err) {
    if (err instanceof StepFailed) return err.message;
    if (err && err.errcode) {
        const where = err.url ? ` from ${new URL(err.url).pathname}` : "";
        return `HTTP ${err.httpStatus} ${err.errcode}${where}: ${err.data?.error ?? ""}`;
    }
    return `${err?.name ?? "Error"}: ${err?.message ?? err}\n${(err?.stack ?? "").split("\n").slice(1, 4).join("\n")}`;
}

export function expect(condition, message) {
    if (!condition) throw new StepFailed(message);
}

// script: the file name for the usage line; tag: the prefix of progress lines on stderr;
// deviceName: the display name of the devices it logs in; timeoutS: the default overall
// deadline; waitMs and pollMs: how long until() waits by default, and how often it looks.
export function scenario({ script, tag, deviceName, timeoutS, waitMs, pollMs }) {
    const [baseUrl, aliceName, alicePassword, bobName, bobPassword, timeoutArg] = process.argv.slice(2);
    if (!bobPassword) {
        process.stderr.write(`usage: node ${script} BASE_URL ALICE PASS BOB PASS [TIMEOUT_S]\n`);
        process.exit(2);
    }
    const deadline = Date.now() + 1000 * Number(timeoutArg || timeoutS);
    const steps = [];
    const clients = [];

    // A core step stops the scenario when it fails; a check only records its failure.
    async function step(name, fn, core = true) {
        try {
            const detail = await fn();
            steps.push({ name, ok: true, detail: detail ?? null });
            process.stderr.write(`[${tag}] ${name}: ok\n`);
            return detail;
        } catch (err) {
            steps.push({ name, ok: false, detail: describe(err) });
            process.stderr.write(`[${tag}] ${name}: FAILED ${describe(err)}\n`);
            if (core) throw new StepFailed(name);
            return undefined;
        }
    }

    // Poll (fed by the clients' own /sync loops) until fn() is truthy; fn may be async.
    async function until(what, fn, timeoutMs = waitMs) {
        const end = Math.min(Date.now() + timeoutMs, deadline);
        for (;;) {
            const value = await fn();
            if (value) return value;
            if (Date.now() >= end) throw new StepFailed(`timed out waiting for ${what}`);
            await new Promise((resolve) => setTimeout(resolve, pollMs));
        }
    }

    async function login(user, password) {
        const anon = sdk.createClient({ baseUrl });
        const response = await anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password,
            initial_device_display_name: deviceName,
        });
        return sdk.createClient({
            baseUrl,
            accessToken: response.access_token,
            userId: response.user_id,
            deviceId: response.device_id,
            // Like Element: local echoes wait aside, the timeline keeps the server's order.
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
        }, 30000);
    }

    async function run(body) {
        const overall = new Promise((_, reject) =>
            setTimeout(() => reject(new StepFailed("scenario deadline passed")), Math.max(0, deadline - Date.now()) + 5000).unref());
        try {
            await Promise.race([body(), overall]);
        } catch (err) {
            if (!(err instanceof StepFailed) || err.message === "scenario deadline passed") {
                steps.push({ name: "scenario finished", ok: false, detail: describe(err) });
            }
        } finally {
            for (const client of clients) client.stopClient();
        }
        const ok = steps.length > 0 && steps.every((s) => s.ok);
        process.stdout.write(JSON.stringify({ ok, steps }) + "\n");
        // Stopped clients may leave an aborted long-poll behind; do not wait for it.
        process.exit(0);
    }

    return {
        users: { aliceName, alicePassword, bobName, bobPassword },
        clients, step, until, login, waitPrepared, run,
    };
}
