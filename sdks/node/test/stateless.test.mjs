// Stateless streamable HTTP (no MCP session, no server requests) with the official MCP
// client against a real service: the payment id is the right to confirm, elicitation
// falls back to two steps, callers are told apart by their credential, and callers
// without one always see confirm tools.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Mode } from "walleot";
import { needsService, service, sessionOf, status, text, withServer } from "./support.mjs";

test("the payment id, not the link, is the right to confirm", needsService, async () => {
  await withServer(service, { transport: "stateless" }, async (server) => {
    const alice = await server.connect();
    const first = await alice.callTool({ name: "add", arguments: { a: 5, b: 5 } });
    assert.equal(status(first), "payment_required");
    const paymentId = first.structuredContent.paymentId;
    const session = sessionOf(first);
    await service.pay(session);
    const mallory = await server.connect();
    for (const guess of [session, `pay_${session.slice(5)}`]) {
      const stolen = await mallory.callTool({ name: "confirm_add_payment", arguments: { payment_id: guess } });
      assert.equal(status(stolen), "refused");
    }
    assert.deepEqual(server.runs, {});
    // A one-shot client that comes back later holds the payment id: it confirms.
    const again = await server.connect();
    const done = await again.callTool({ name: "confirm_add_payment", arguments: { payment_id: paymentId } });
    assert.equal(text(done), "10");
    assert.deepEqual(server.runs, { add: 1 });
  });
});

test("elicitation on stateless HTTP falls back to two steps", needsService, async () => {
  await withServer(service, { mode: Mode.ELICITATION, transport: "stateless" }, async (server) => {
    const client = await server.connect({ elicitation: async () => ({ action: "accept", content: { paid: true } }) });
    const first = await client.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(status(first), "payment_required", text(first));
    assert.equal(first.isError, true);
    await service.pay(sessionOf(first));
    const done = await client.callTool({ name: "confirm_add_payment", arguments: { payment_id: first.structuredContent.paymentId } });
    assert.equal(text(done), "2");
    assert.deepEqual(server.runs, { add: 1 });
  });
});

test("dynamic tools show anonymous callers every confirm tool", needsService, async () => {
  await withServer(service, { mode: Mode.DYNAMIC_TOOLS, transport: "stateless" }, async (server) => {
    const first = await server.connect();
    const second = await server.connect();
    const before = (await second.listTools()).tools.map((t) => t.name);
    assert.ok(before.includes("confirm_add_payment"), "callers who cannot be told apart always see it");
    await first.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.deepEqual((await second.listTools()).tools.map((t) => t.name), before);
  });
});

test("without a session, callers are told apart by their credential", needsService, async () => {
  // No `identify`: one credential is one caller for the cap and the confirm tools.
  await withServer(service, { mode: Mode.DYNAMIC_TOOLS, transport: "stateless", maxOpenPerCaller: 2 }, async (server) => {
    const alice = await server.connect({ credential: "Bearer alice" });
    const bob = await server.connect({ credential: "Bearer bob" });
    const names = async (client) => (await client.listTools()).tools.map((t) => t.name);
    assert.ok(!(await names(alice)).includes("confirm_add_payment"));
    const first = await alice.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(status(first), "payment_required", text(first));
    assert.ok((await names(alice)).includes("confirm_add_payment"));
    assert.ok(!(await names(bob)).includes("confirm_add_payment"), "another caller never sees it");
    await alice.callTool({ name: "add", arguments: { a: 2, b: 1 } });
    const refused = await alice.callTool({ name: "add", arguments: { a: 3, b: 1 } });
    assert.equal(status(refused), "refused");
    assert.match(text(refused), /unpaid payments are open/);
    const fair = await bob.callTool({ name: "add", arguments: { a: 1, b: 1 } });
    assert.equal(status(fair), "payment_required", text(fair));
    // The payment id, not the credential, is the right to confirm.
    await service.pay(sessionOf(first));
    const done = await bob.callTool({ name: "confirm_add_payment", arguments: { payment_id: first.structuredContent.paymentId } });
    assert.equal(text(done), "2");
    assert.deepEqual(server.runs, { add: 1 });
  });
});
