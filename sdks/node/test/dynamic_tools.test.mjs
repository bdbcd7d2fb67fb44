// DYNAMIC_TOOLS with the official MCP client against a real service: a caller's
// confirm tool is listed while a payment of its own is open, and the change announced.

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { Mode } from "walleot";
import { needsService, service, sessionOf, status, text, withServer } from "./support.mjs";

const CONFIRM = "confirm_add_payment";

async function names(client) {
  return new Set((await client.listTools()).tools.map((t) => t.name));
}

/** Counts tools/list_changed notifications. */
class Changes {
  count = 0;
  seen = () => {
    this.count += 1;
  };

  async waitFor(count) {
    const deadline = Date.now() + 5000;
    while (this.count < count) {
      if (Date.now() > deadline) throw new Error(`saw ${this.count} tool list changes, not ${count}`);
      await sleep(20);
    }
  }
}

for (const transport of ["http", "memory"]) {
  test(`${transport}: a confirm tool shows only while its caller's payment is open`, needsService, async () => {
    await withServer(service, { mode: Mode.DYNAMIC_TOOLS, transport }, async (server) => {
      const changes = new Changes();
      const alice = await server.connect({ onListChanged: changes.seen });
      const bob = await server.connect();
      assert.equal(alice.getServerCapabilities().tools.listChanged, true);
      assert.ok(!(await names(alice)).has(CONFIRM));
      const first = await alice.callTool({ name: "add", arguments: { a: 4, b: 4 } });
      assert.equal(status(first), "payment_required");
      assert.equal(first.isError, true);
      assert.match(first.structuredContent.nextStep, /now in the tool list/);
      await changes.waitFor(1);
      assert.ok((await names(alice)).has(CONFIRM));
      assert.ok(!(await names(bob)).has(CONFIRM), "another caller never sees it");
      await service.pay(sessionOf(first));
      const args = { payment_id: first.structuredContent.paymentId };
      assert.equal(text(await alice.callTool({ name: CONFIRM, arguments: args })), "8");
      await changes.waitFor(2);
      assert.ok(!(await names(alice)).has(CONFIRM));
      // The client lost that answer and asks again: the kept result, not "unknown tool".
      assert.equal(text(await alice.callTool({ name: CONFIRM, arguments: args })), "8");
      assert.deepEqual(server.runs, { add: 1 });

      // A payment cancelled at the service takes its confirm tool with it.
      const second = await alice.callTool({ name: "add", arguments: { a: 1, b: 1 } });
      assert.ok((await names(alice)).has(CONFIRM));
      const cancelled = await service.request("POST", `sessions/${sessionOf(second)}/cancel`);
      assert.equal(cancelled.status, 200);
      const refused = await alice.callTool({ name: CONFIRM, arguments: { payment_id: second.structuredContent.paymentId } });
      assert.equal(status(refused), "refused");
      assert.ok(!(await names(alice)).has(CONFIRM));
    });
  });
}

test("dynamic tools: another caller cannot use the payment id of an open payment's tool", needsService, async () => {
  await withServer(service, { mode: Mode.DYNAMIC_TOOLS }, async (server) => {
    const alice = await server.connect();
    const first = await alice.callTool({ name: "add", arguments: { a: 2, b: 3 } });
    await service.pay(sessionOf(first));
    const bob = await server.connect();
    const stolen = await bob.callTool({ name: CONFIRM, arguments: { payment_id: sessionOf(first) } });
    assert.equal(status(stolen), "refused");
    assert.deepEqual(server.runs, {});
    // Without a subject, the payment id itself is the right to confirm.
    const done = await bob.callTool({ name: CONFIRM, arguments: { payment_id: first.structuredContent.paymentId } });
    assert.equal(text(done), "5");
  });
});
