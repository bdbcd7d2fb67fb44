// The guarantees in every mode, against a real service over streamable HTTP.
//
// A call from a client that declares no elicitation and sends no progress token is
// answered with a payment request in every mode, then confirmed (by the confirm tool,
// or in RESUBMIT by the same call with `payment_id`): the part below that runs for all
// six. PROGRESS, ELICITATION and AUTO also pay within one call; those flows follow.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Mode } from "walleot";
import { needsService, required, service, sessionOf, status, text, withServer } from "./support.mjs";

/** The call that uses `paymentId` to run `tool` with `args` in `mode`. */
function confirming(mode, tool, args, paymentId) {
  if (mode === Mode.RESUBMIT) return { name: tool, arguments: { ...args, payment_id: paymentId } };
  return { name: `confirm_${tool}_payment`, arguments: { payment_id: paymentId } };
}

for (const mode of Object.values(Mode)) {
  test(`${mode}: a paid call runs once, and a repeated confirm gets the kept result`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const args = { a: 20, b: 22 };
      const first = await required(assert, client, "add", args);
      const session = sessionOf(first);
      await service.pay(session);
      const call = confirming(mode, "add", args, first.structuredContent.paymentId);
      const done = await client.callTool(call);
      assert.equal(text(done), "42", text(done));
      assert.notEqual(done.isError, true);
      assert.equal((await service.session(session)).captureStatus, "captured");
      assert.equal(text(await client.callTool(call)), "42");
      assert.deepEqual(server.runs, { add: 1 });
    });
  });

  test(`${mode}: a cheap payment cannot pay for the expensive tool`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const cheap = await required(assert, client, "add", { a: 1, b: 1 });
      await service.pay(sessionOf(cheap));
      const paymentId = cheap.structuredContent.paymentId;
      const stolen = await client.callTool(confirming(mode, "premium_analysis", { data: "x" }, paymentId));
      assert.equal(stolen.isError, true);
      assert.equal(status(stolen), "refused", text(stolen));
      assert.deepEqual(server.runs, {});
      assert.equal(text(await client.callTool(confirming(mode, "add", { a: 1, b: 1 }, paymentId))), "2");
    });
  });

  test(`${mode}: the checkout link's session id is no payment id`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const first = await required(assert, client, "add", { a: 1, b: 2 });
      const session = sessionOf(first);
      await service.pay(session);
      for (const guess of [session, `pay_${session.slice(5)}`]) {
        const taken = await client.callTool(confirming(mode, "add", { a: 1, b: 2 }, guess));
        assert.equal(status(taken), "refused", guess);
      }
      assert.deepEqual(server.runs, {});
    });
  });

  test(`${mode}: a payment bound to one caller is refused to another`, needsService, async () => {
    const identify = (extra) => extra._meta?.["test/user"];
    await withServer(service, { mode, identify }, async (server) => {
      const alice = await server.connect();
      const args = { a: 3, b: 4 };
      const first = await alice.callTool({ name: "add", arguments: args, _meta: { "test/user": "alice" } });
      assert.equal(status(first), "payment_required");
      await service.pay(sessionOf(first));
      const mallory = await server.connect();
      const call = confirming(mode, "add", args, first.structuredContent.paymentId);
      const stolen = await mallory.callTool({ ...call, _meta: { "test/user": "mallory" } });
      assert.equal(status(stolen), "refused");
      assert.deepEqual(server.runs, {});
      assert.equal(text(await alice.callTool({ ...call, _meta: { "test/user": "alice" } })), "7");
    });
  });

  test(`${mode}: ten concurrent confirms run the tool once`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const args = { a: 1, b: 2 };
      const first = await required(assert, client, "add", args);
      await service.pay(sessionOf(first));
      const call = confirming(mode, "add", args, first.structuredContent.paymentId);
      const answers = await Promise.all(Array.from({ length: 10 }, () => client.callTool(call)));
      assert.deepEqual(answers.map(text), Array(10).fill("3"));
      assert.deepEqual(server.runs, { add: 1 });
    });
  });

  test(`${mode}: a failing tool releases the funds`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect();
      const first = await required(assert, client, "broken", { n: 1 });
      const session = sessionOf(first);
      await service.pay(session);
      const call = confirming(mode, "broken", { n: 1 }, first.structuredContent.paymentId);
      const failed = await client.callTool(call);
      assert.equal(failed.isError, true);
      const released = await service.session(session);
      assert.equal(released.status, "cancelled");
      assert.equal(released.captureStatus, "released");
      assert.equal((await client.callTool(call)).isError, true);
      assert.deepEqual(server.runs, { broken: 1 });
    });
  });

  test(`${mode}: bad arguments are refused before any session is created`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const client = await server.connect({ elicitation: async () => ({ action: "accept", content: { paid: true } }) });
      const before = await service.newestSession();
      const refused = await client.callTool({ name: "add", arguments: { a: "one", b: 1 } }, undefined, {
        onprogress: () => {},
      });
      assert.equal(refused.isError, true);
      assert.match(text(refused), /nothing was charged/);
      assert.equal(await service.newestSession(), before);
      assert.deepEqual(server.runs, {});
    });
  });

  test(`${mode}: a service that is down is a clear tool error`, needsService, async () => {
    const down = { url: "http://127.0.0.1:9", key: service.key };
    await withServer(down, { mode, timeout: 2 }, async (server) => {
      const client = await server.connect({ elicitation: async () => ({ action: "accept", content: { paid: true } }) });
      const failed = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } }, undefined, { onprogress: () => {} });
      assert.equal(failed.isError, true);
      assert.equal(status(failed), "error");
      assert.match(text(failed), /the payment service could not be reached; nothing was charged/);
      assert.ok(!text(failed).includes("127.0.0.1:9"));
      // A payment id this server never made is refused without asking the service.
      assert.equal(status(await client.callTool(confirming(mode, "add", { a: 1, b: 1 }, "pay_x"))), "refused");
    });
  });
}

// Paying within one call.

/** A client that pays within the call in `mode`, and the options its calls need. */
async function inCall(server, mode, onPay = (session) => service.pay(session)) {
  if (mode === Mode.PROGRESS) {
    const client = await server.connect();
    let paid = false;
    const options = {
      onprogress: async ({ message }) => {
        if (!paid && message?.includes("/checkout/")) {
          paid = true;
          await onPay(sessionOf(message));
        }
      },
    };
    return { call: (params) => client.callTool(params, undefined, options) };
  }
  const client = await server.connect({
    elicitation: async (params) => {
      await onPay(sessionOf(params.url ?? params.message));
      return { action: "accept", content: { paid: true } };
    },
  });
  return { call: (params) => client.callTool(params) };
}

for (const mode of [Mode.PROGRESS, Mode.ELICITATION, Mode.AUTO]) {
  test(`${mode}: paid within the call, the tool runs once and the funds are captured`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      let session;
      const { call } = await inCall(server, mode, (s) => service.pay((session = s)));
      const done = await call({ name: "premium_analysis", arguments: { data: "one two" } });
      assert.equal(text(done), "2 words", text(done));
      assert.equal((await service.session(session)).captureStatus, "captured");
      assert.deepEqual(server.runs, { premium_analysis: 1 });
    });
  });

  test(`${mode}: paid within the call, a failing tool releases the funds`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      let session;
      const { call } = await inCall(server, mode, (s) => service.pay((session = s)));
      const failed = await call({ name: "broken", arguments: { n: 2 } });
      assert.equal(failed.isError, true);
      assert.match(text(failed), /the tool failed/);
      const released = await service.session(session);
      assert.equal(released.status, "cancelled");
      assert.equal(released.captureStatus, "released");
      assert.deepEqual(server.runs, { broken: 1 });
    });
  });

  test(`${mode}: a payment the payer cancelled is refused within the call`, needsService, async () => {
    await withServer(service, { mode }, async (server) => {
      const { call } = await inCall(server, mode, (s) => service.request("POST", `sessions/${s}/cancel`));
      const refused = await call({ name: "add", arguments: { a: 1, b: 1 } });
      assert.equal(refused.isError, true);
      assert.equal(status(refused), "refused", text(refused));
      assert.match(text(refused), /cancelled; nothing was charged/);
      assert.deepEqual(server.runs, {});
    });
  });
}
